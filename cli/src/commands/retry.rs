//! `labeler retry --failed`: re-dispatch images recorded FAILED.
//!
//! The FAILED records are found through the sparse status index (one Query
//! per shard, never a Scan), then re-queued
//! through [`dispatcher::dispatch::dispatch_changes`] with
//! [`ClaimKind::RetryFailed`]: the claim replaces a record only while it is
//! still FAILED for the same upload, so a retry never overrides a newer
//! upload or an image that meanwhile succeeded, and two operators retrying at
//! once submit each image once. A retry interrupted between its claims and
//! its SubmitJob leaves those images QUEUED under an unsubmitted claim; the
//! reconciler dispatches them once the claim's lease is over.

use crate::args::RetryArgs;
use crate::aws::records_in_status;
use crate::output::{fields, one_line, table};
use crate::record::{Item, Record};
use crate::{settings, Context};
use anyhow::anyhow;
use dispatcher::dispatch::dispatch_changes;
use dispatcher::event::{Change, ObjectChange};
use labeler_core::store::{ClaimKind, Clock};
use labeler_core::Revision;
use serde::Serialize;
use std::io::Write;

/// A FAILED image to retry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The image.
    pub uri: String,
    /// Why it failed.
    pub reason: Option<String>,
    #[serde(skip)]
    change: ObjectChange,
}

/// The change that re-queues a FAILED record's upload, if the record has
/// everything a job needs.
pub fn candidate(item: &Item, reason_contains: Option<&str>) -> Option<Candidate> {
    let record = Record::from_item(item)?;
    if record.status != "FAILED" {
        return None;
    }
    if let Some(text) = reason_contains {
        let reason = record.reason.as_deref().unwrap_or("").to_lowercase();
        if !reason.contains(&text.to_lowercase()) {
            return None;
        }
    }
    let revision = Revision::try_from(record.revision.clone()?).ok()?;
    Some(Candidate {
        uri: record.uri.clone(),
        reason: record.reason.clone(),
        change: ObjectChange {
            change: Change::Created,
            bucket: record.bucket,
            key: record.key,
            revision,
            version_id: record.version_id,
            etag: record.etag,
            size: record.size,
            delete_marker: false,
        },
    })
}

#[derive(Serialize)]
struct JsonReport<'a> {
    dry_run: bool,
    matched: usize,
    queued: u64,
    jobs: u64,
    changed_meanwhile: u64,
    images: &'a [Candidate],
}

/// Runs the retry.
pub async fn run(ctx: &Context, args: &RetryArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let cfg = settings::resolve(ctx.sdk(), ctx.table.as_deref(), &args.settings).await?;
    let filter = args.reason_contains.as_deref();
    let mut candidates: Vec<Candidate> =
        records_in_status(ctx.dynamodb(), &cfg.table, labeler_core::Status::Failed)
            .await?
            .iter()
            .filter_map(|item| candidate(item, filter))
            .collect();
    candidates.sort_by(|a, b| a.uri.cmp(&b.uri));

    let (mut queued, mut jobs, mut changed) = (0u64, 0u64, 0u64);
    if !args.dry_run {
        let claim = format!(
            "retry-{}-{:016x}",
            Clock::now().unix_millis,
            fastrand::u64(..)
        );
        let clients = ctx.dispatch_clients();
        for batch in candidates.chunks(args.settings.batch as usize) {
            let changes = batch.iter().map(|c| c.change.clone()).collect();
            let summary = dispatch_changes(
                changes,
                &claim,
                ClaimKind::RetryFailed,
                &clients,
                &cfg,
                Clock::now(),
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "{e}; images this retry claimed but did not submit stay QUEUED and the \
                     reconciler dispatches them after the claim lease; the others are still \
                     FAILED: run the retry again for them"
                )
            })?;
            queued += summary.images_queued as u64;
            jobs += summary.jobs_submitted as u64;
            changed += (summary.duplicates + summary.superseded + summary.skipped + summary.ignored)
                as u64;
        }
    }

    if args.json {
        serde_json::to_writer(
            &mut *out,
            &JsonReport {
                dry_run: args.dry_run,
                matched: candidates.len(),
                queued,
                jobs,
                changed_meanwhile: changed,
                images: &candidates,
            },
        )?;
        writeln!(out)?;
        return Ok(());
    }
    if candidates.is_empty() {
        writeln!(out, "no FAILED image matches")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = candidates
        .iter()
        .map(|c| {
            vec![
                c.uri.clone(),
                one_line(c.reason.as_deref().unwrap_or("-"), 100),
            ]
        })
        .collect();
    out.write_all(table(&["IMAGE", "REASON"], &rows, &[]).as_bytes())?;
    writeln!(out)?;
    let pairs = if args.dry_run {
        vec![("would retry", candidates.len().to_string())]
    } else {
        vec![
            ("re-queued", format!("{queued} in {jobs} Batch jobs")),
            ("changed meanwhile", changed.to_string()),
        ]
    };
    out.write_all(fields(&pairs).as_bytes())?;
    Ok(())
}
