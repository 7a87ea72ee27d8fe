//! AWS plumbing: configuration from the standard SDK environment, one-line
//! error messages, and paginated reads of the results table.

use crate::args::Cli;
use crate::record::Item;
use anyhow::{anyhow, bail, Context};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client as Dynamo;
use std::collections::HashMap;

/// Loads the SDK configuration (flags over the standard environment) and checks, before any call, that a region
/// and credentials are there: their absence gets one clear line instead of
/// a dispatch failure deep in a retry loop.
pub async fn load(cli: &Cli) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(dispatcher::retry_policy(8));
    if let Some(region) = &cli.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &cli.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &cli.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        bail!("no AWS region: set AWS_REGION (or a region in your AWS profile)");
    }
    let provider = config
        .credentials_provider()
        .ok_or_else(|| anyhow!("no AWS credentials provider is configured"))?;
    use aws_sdk_dynamodb::config::ProvideCredentials;
    if provider.provide_credentials().await.is_err() {
        bail!(
            "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (LABELER_LOG=debug shows what was tried)"
        );
    }
    Ok(config)
}

/// The S3 client: path-style addressing when a custom endpoint is set (as
/// local emulators need), virtual-hosted otherwise.
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The deepest error of a chain, which is usually the one that says what
/// happened ("Connection refused", "profile not found").
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// One line for an SDK error: the service's code and message, or what
/// stopped the request from reaching it.
pub fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_owned(),
                _ => innermost(err),
            }
        }
        SdkError::DispatchFailure(_) => format!("could not reach AWS: {}", innermost(e)),
        SdkError::TimeoutError(_) => "timed out waiting for AWS".to_owned(),
        other => innermost(other),
    }
}

/// Whether the error is the service saying the resource does not exist.
pub fn is_not_found<E, R>(e: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ResourceNotFoundException"))
}

/// Turns a DynamoDB error on `table` into one line, naming a missing table.
pub fn table_error<E, R>(table: &str, e: SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if is_not_found(&e) {
        anyhow!("table {table:?} does not exist in this account and region (check --table / LABELER_TABLE and AWS_REGION)")
    } else {
        anyhow!("DynamoDB table {table:?}: {}", describe(&e))
    }
}

/// A Scan over the image records (`sk = IMAGE`) of the results table.
#[derive(Debug, Clone)]
pub struct ImageScan<'a> {
    /// The table.
    pub table: &'a str,
    /// Attributes to read; all of them when empty.
    pub projection: &'a [&'a str],
    /// Items per page.
    pub page_size: Option<i32>,
}

impl ImageScan<'_> {
    /// Reads segment `segment` of `total`, handing each page to `on_page`.
    pub async fn run(
        &self,
        db: &Dynamo,
        segment: Option<(i32, i32)>,
        mut on_page: impl FnMut(Vec<Item>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut names = HashMap::from([("#sk".to_owned(), "sk".to_owned())]);
        let mut projection = Vec::new();
        for (i, attr) in self.projection.iter().enumerate() {
            let alias = format!("#p{i}");
            names.insert(alias.clone(), (*attr).to_owned());
            projection.push(alias);
        }
        let mut start: Option<Item> = None;
        loop {
            let mut request = db
                .scan()
                .table_name(self.table)
                .filter_expression("#sk = :image")
                .set_expression_attribute_names(Some(names.clone()))
                .expression_attribute_values(":image", AttributeValue::S("IMAGE".into()))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take());
            if !projection.is_empty() {
                request = request.projection_expression(format!("#sk, {}", projection.join(", ")));
            }
            if let Some((segment, total)) = segment {
                request = request.segment(segment).total_segments(total);
            }
            let page = request
                .send()
                .await
                .map_err(|e| table_error(self.table, e))?;
            on_page(page.items.unwrap_or_default())?;
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }

    /// Reads the whole table with `segments` parallel segments and returns
    /// what `keep` kept of each item.
    pub async fn collect<T: Send>(
        &self,
        db: &Dynamo,
        segments: i32,
        keep: impl Fn(&Item) -> Option<T> + Sync,
    ) -> anyhow::Result<Vec<T>> {
        let keep = &keep;
        let parts = futures::future::try_join_all((0..segments).map(|segment| async move {
            let mut kept = Vec::new();
            self.run(db, Some((segment, segments)), |items| {
                kept.extend(items.iter().filter_map(keep));
                Ok(())
            })
            .await
            .with_context(|| format!("scan segment {segment}"))?;
            anyhow::Ok(kept)
        }))
        .await?;
        Ok(parts.into_iter().flatten().collect())
    }
}

/// Every record in `status`, read from the sparse status index with one
/// paginated Query per shard (never a Scan), newest first within a shard.
pub async fn records_in_status(
    db: &Dynamo,
    table: &str,
    status: labeler_core::Status,
) -> anyhow::Result<Vec<Item>> {
    use labeler_core::schema::{status_keys, STATUS_INDEX, STATUS_INDEX_PK};
    let mut items = Vec::new();
    for shard in status_keys(status) {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = db
                .query()
                .table_name(table)
                .index_name(STATUS_INDEX)
                .key_condition_expression("#k = :k")
                .expression_attribute_names("#k", STATUS_INDEX_PK)
                .expression_attribute_values(":k", AttributeValue::S(shard.clone()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| anyhow!("querying {STATUS_INDEX} of {table}: {}", describe(&e)))?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
    }
    Ok(items)
}
