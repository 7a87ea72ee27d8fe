//! The cascade's Rekognition budget: at most `cap` DetectLabels calls per
//! UTC day or month, counted in the results table so that every worker of
//! the fleet spends from the same purse.
//!
//! One counter item per period (`pk = BUDGET#rekognition`,
//! `sk = PERIOD#2026-12`), incremented by one conditional `UpdateItem`
//! **before** each call: [`SPEND_CONDITION`], whose in-memory twin is
//! [`allows`]. Two workers spending at once are serialised by DynamoDB, so
//! the count never passes the cap.
//!
//! Crash and lost-response analysis: the unit is taken before the call, so
//! a worker that dies between the two, or a call that then fails, has
//! spent a unit it did not use; an `UpdateItem` whose response is lost and
//! that the SDK sends again counts twice. Every fault errs on the side of
//! fewer calls, never more: the cap is a ceiling, the spend can fall short
//! of it by the number of such faults. A counter the table cannot be asked
//! about (DynamoDB unavailable) is a transient fault of the image: no call
//! is made, and the worker leaves the image QUEUED for a later attempt, as
//! it does when it cannot write the image's record.

use crate::db::{n, s, Clock, StoreError};
use crate::schema::{attr, PK, SK};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

/// Partition key of the budget counters.
pub const BUDGET_PK: &str = "BUDGET#rekognition";
/// The counter's attribute: calls spent in the period.
pub const SPENT: &str = "spent";
/// The spend's condition: the period's counter is below the cap (or not
/// there yet). Twin: [`allows`].
pub const SPEND_CONDITION: &str = "(attribute_not_exists(spent) AND :zero < :cap) OR spent < :cap";
/// Days a counter outlives its period (TTL), for inspection.
const KEEP_DAYS: u64 = 62;

/// How long a budget lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    #[default]
    Month,
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "day" => Ok(Period::Day),
            "month" => Ok(Period::Month),
            other => Err(format!("{other:?} is not a budget period (day or month)")),
        }
    }
}

impl Period {
    /// The name `--budget-period` takes: `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// The counter's sort key for the period holding `now`:
    /// `PERIOD#2026-12-05` or `PERIOD#2026-12`.
    pub fn sort_key(self, now: Clock) -> String {
        let date = now.rfc3339();
        let len = match self {
            Period::Day => 10,
            Period::Month => 7,
        };
        format!("PERIOD#{}", &date[..len])
    }
}

/// A spending cap: `cap` calls per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Calls allowed per period.
    pub cap: u64,
    /// The period.
    pub period: Period,
}

/// Whether a period that has spent `spent` calls may spend one more: the
/// in-memory twin of [`SPEND_CONDITION`].
pub fn allows(spent: Option<u64>, cap: u64) -> bool {
    spent.unwrap_or(0) < cap
}

/// Takes one call from the period's budget: `Ok(true)` when it was taken,
/// `Ok(false)` when the budget is spent. See the module documentation.
pub async fn spend(
    client: &Client,
    table: &str,
    budget: Budget,
    now: Clock,
) -> Result<bool, StoreError> {
    let sort_key = budget.period.sort_key(now);
    let expires = now.plus_secs(KEEP_DAYS * 86_400).unix_secs();
    let taken = client
        .update_item()
        .table_name(table)
        .key(PK, s(BUDGET_PK))
        .key(SK, s(&sort_key))
        .update_expression(format!(
            "ADD {SPENT} :one SET {} = :expires, budget_cap = :cap",
            attr::EXPIRES_AT
        ))
        .condition_expression(SPEND_CONDITION)
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":cap", n(budget.cap))
        .expression_attribute_values(":expires", n(expires))
        .send()
        .await;
    match taken {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(StoreError::new("UpdateItem", BUDGET_PK, e)),
    }
}

/// Calls spent in the period holding `now` (a consistent read).
pub async fn spent(
    client: &Client,
    table: &str,
    period: Period,
    now: Clock,
) -> Result<u64, StoreError> {
    let item = client
        .get_item()
        .table_name(table)
        .key(PK, s(BUDGET_PK))
        .key(SK, s(period.sort_key(now)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StoreError::new("GetItem", BUDGET_PK, e))?
        .item;
    Ok(item
        .as_ref()
        .and_then(|i| i.get(SPENT))
        .and_then(|v| AttributeValue::as_n(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_its_utc_day_or_month() {
        // 2026-12-05T02:30:00Z
        let now = Clock {
            unix_millis: 1_796_437_800_000,
        };
        assert_eq!(Period::Day.sort_key(now), "PERIOD#2026-12-05");
        assert_eq!(Period::Month.sort_key(now), "PERIOD#2026-12");
    }

    #[test]
    fn the_budget_allows_a_call_until_the_count_reaches_the_cap() {
        assert!(allows(None, 1));
        assert!(allows(Some(0), 1));
        assert!(!allows(Some(1), 1));
        assert!(!allows(None, 0), "a cap of zero allows no call");
        assert!(!allows(Some(0), 0));
    }
}
