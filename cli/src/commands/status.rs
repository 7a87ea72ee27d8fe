//! `labeler status`: counts by status and the most recent failures.
//!
//! Counting needs every image record, so this is a (parallel) Scan reading
//! only the attributes it shows: about one read unit per 4 KB of projected
//! data, fine for an operator's look, not for a hot path.

use crate::args::StatusArgs;
use crate::aws::ImageScan;
use crate::output::{fields, one_line, or_dash, table};
use crate::record::Record;
use crate::Context;
use labeler_core::schema::{attr, Status, PK};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// A failure as `status` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The image.
    pub uri: String,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub updated_at: Option<String>,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The table.
    pub table: String,
    /// Image records.
    pub total: u64,
    /// Records per status (every status present, zero or not).
    pub counts: BTreeMap<String, u64>,
    /// The oldest QUEUED record: an image stuck here long after its job
    /// should have run deserves a look.
    pub oldest_queued: Option<Failure>,
    /// Most recent failures first.
    pub recent_failures: Vec<Failure>,
    /// Seconds the oldest QUEUED image has waited.
    pub oldest_queued_age_secs: Option<u64>,
    /// Images labeled in the last [`RATE_WINDOW_MINUTES`] minutes.
    pub labeled_recently: u64,
    /// Of those, per minute.
    pub labeled_per_minute: f64,
}

/// The window of the labeling rate `status` shows, minutes.
pub const RATE_WINDOW_MINUTES: u64 = 5;

/// Builds the report from image records as of `now_millis` (Unix).
pub fn report(table: &str, records: Vec<Record>, failures: usize, now_millis: u64) -> Report {
    let since = now_millis.saturating_sub(RATE_WINDOW_MINUTES * 60_000);
    let at = |t: Option<&String>| t.and_then(|t| labeler_core::schema::parse_rfc3339_millis(t));
    let labeled_recently = records
        .iter()
        .filter(|r| r.status == Status::Labeled.as_str())
        .filter(|r| at(r.updated_at.as_ref()).is_some_and(|t| t >= since))
        .count() as u64;
    let mut counts: BTreeMap<String, u64> = [
        Status::Queued,
        Status::Labeled,
        Status::Failed,
        Status::Skipped,
    ]
    .iter()
    .map(|s| (s.as_str().to_owned(), 0))
    .collect();
    let mut failed = Vec::new();
    let mut oldest_queued: Option<Record> = None;
    let total = records.len() as u64;
    for r in records {
        *counts.entry(r.status.clone()).or_default() += 1;
        if r.status == Status::Failed.as_str() {
            failed.push(r);
        } else if r.status == Status::Queued.as_str()
            && oldest_queued.as_ref().is_none_or(|o| {
                r.queued_at.as_deref().unwrap_or("") < o.queued_at.as_deref().unwrap_or("")
            })
        {
            oldest_queued = Some(r);
        }
    }
    // RFC 3339 timestamps in UTC with a fixed width sort as strings.
    failed.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.uri.cmp(&b.uri)));
    failed.truncate(failures);
    let view = |r: Record, at: Option<String>| Failure {
        uri: r.uri,
        reason: r.reason,
        updated_at: at,
    };
    Report {
        table: table.to_owned(),
        total,
        counts,
        oldest_queued_age_secs: oldest_queued
            .as_ref()
            .and_then(|r| at(r.queued_at.as_ref()))
            .map(|t| now_millis.saturating_sub(t) / 1000),
        oldest_queued: oldest_queued.map(|r| {
            let at = r.queued_at.clone();
            view(r, at)
        }),
        labeled_recently,
        labeled_per_minute: labeled_recently as f64 / RATE_WINDOW_MINUTES as f64,
        recent_failures: failed
            .into_iter()
            .map(|r| {
                let at = r.updated_at.clone();
                view(r, at)
            })
            .collect(),
    }
}

/// The human view of a report.
pub fn render(r: &Report) -> String {
    let order = ["QUEUED", "LABELED", "FAILED", "SKIPPED", "DELETED"];
    let mut rows: Vec<Vec<String>> = order
        .iter()
        .map(|s| {
            vec![
                (*s).to_owned(),
                r.counts.get(*s).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    for (status, n) in &r.counts {
        if !order.contains(&status.as_str()) {
            rows.push(vec![status.clone(), n.to_string()]);
        }
    }
    rows.push(vec!["total".into(), r.total.to_string()]);
    let mut text = format!("table {}\n\n", r.table);
    text.push_str(&table(&["STATUS", "IMAGES"], &rows, &[1]));
    text.push('\n');
    text.push_str(&fields(&[(
        "labeling rate",
        format!(
            "{:.1} images/min over the last {RATE_WINDOW_MINUTES} min ({} labeled)",
            r.labeled_per_minute, r.labeled_recently
        ),
    )]));
    if let Some(q) = &r.oldest_queued {
        let age = r
            .oldest_queued_age_secs
            .map_or("-".to_owned(), |s| format!("{}m{:02}s", s / 60, s % 60));
        text.push_str(&fields(&[(
            "oldest queued",
            format!(
                "{} (since {}, waiting {age})",
                q.uri,
                or_dash(q.updated_at.as_deref())
            ),
        )]));
    }
    if !r.recent_failures.is_empty() {
        text.push_str("\nmost recent failures\n");
        let rows: Vec<Vec<String>> = r
            .recent_failures
            .iter()
            .map(|f| {
                vec![
                    or_dash(f.updated_at.as_deref()),
                    f.uri.clone(),
                    one_line(f.reason.as_deref().unwrap_or("-"), 100),
                ]
            })
            .collect();
        text.push_str(&table(&["WHEN", "IMAGE", "REASON"], &rows, &[]));
    }
    text
}

/// Prints the report once, or every `--watch` seconds until interrupted.
pub async fn run(ctx: &Context, args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let table_name = ctx.table()?;
    let scan = ImageScan {
        table: table_name,
        projection: &[
            PK,
            attr::BUCKET,
            attr::KEY,
            attr::STATUS,
            attr::REASON,
            attr::UPDATED_AT,
            attr::QUEUED_AT,
        ],
        page_size: None,
    };
    let clear = args.watch.is_some() && std::io::stdout().is_terminal() && !args.json;
    loop {
        let records = scan
            .collect(ctx.dynamodb(), args.segments, Record::from_item)
            .await?;
        let now = labeler_core::store::Clock::now().unix_millis;
        let report = report(table_name, records, args.failures, now);
        if clear {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        if args.json {
            serde_json::to_writer(&mut *out, &report)?;
            writeln!(out)?;
        } else {
            out.write_all(render(&report).as_bytes())?;
        }
        out.flush()?;
        let Some(every) = args.watch else {
            return Ok(());
        };
        if !clear && !args.json {
            writeln!(out)?;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labeling_rate_counts_labels_of_the_last_five_minutes() {
        let now = labeler_core::schema::parse_rfc3339_millis("2026-01-01T00:10:00.000Z").unwrap();
        let r = report(
            "t",
            vec![
                record("a", "LABELED", "2026-01-01T00:09:59.000Z", None),
                record("b", "LABELED", "2026-01-01T00:05:00.000Z", None),
                record("c", "LABELED", "2026-01-01T00:04:59.999Z", None),
                record("d", "FAILED", "2026-01-01T00:09:00.000Z", Some("x")),
            ],
            10,
            now,
        );
        assert_eq!(r.labeled_recently, 2);
        assert_eq!(r.labeled_per_minute, 0.4);
        assert_eq!(r.oldest_queued_age_secs, None);
        assert!(render(&r).contains("0.4 images/min over the last 5 min (2 labeled)"));
    }

    fn record(uri: &str, status: &str, at: &str, reason: Option<&str>) -> Record {
        Record {
            uri: uri.into(),
            bucket: "b".into(),
            key: uri.into(),
            status: status.into(),
            reason: reason.map(Into::into),
            labels: vec![],
            label_model_version: None,
            reused_from: None,
            conversion: None,
            label_note: None,
            job_id: None,
            job_name: None,
            array_index: None,
            attempts: None,
            queued_at: Some(at.into()),
            updated_at: Some(at.into()),
            revision: None,
            version_id: None,
            etag: None,
            size: None,
        }
    }

    #[test]
    fn counts_every_status_and_lists_recent_failures_first() {
        let r = report(
            "t",
            vec![
                record("a", "LABELED", "2026-01-01T00:00:00.000Z", None),
                record("b", "FAILED", "2026-01-01T00:00:01.000Z", Some("old")),
                record("c", "FAILED", "2026-01-02T00:00:00.000Z", Some("new")),
                record("d", "QUEUED", "2026-01-03T00:00:00.000Z", None),
                record("e", "QUEUED", "2026-01-02T00:00:00.000Z", None),
            ],
            1,
            labeler_core::schema::parse_rfc3339_millis("2026-01-03T00:00:00.000Z").unwrap(),
        );
        assert_eq!(r.total, 5);
        assert_eq!(r.counts["LABELED"], 1);
        assert_eq!(r.counts["FAILED"], 2);
        assert_eq!(r.counts["QUEUED"], 2);
        assert_eq!(r.counts["SKIPPED"], 0);
        assert_eq!(r.recent_failures.len(), 1);
        assert_eq!(r.recent_failures[0].reason.as_deref(), Some("new"));
        assert_eq!(r.oldest_queued.as_ref().unwrap().uri, "e");
        assert_eq!(r.oldest_queued_age_secs, Some(86_400));
        let text = render(&r);
        assert!(text.contains("waiting 1440m00s"), "{text}");
        assert!(text.contains("FAILED        2"), "{text}");
        assert!(text.contains("new"), "{text}");
    }
}
