//! `labeler backfill s3://BUCKET[/PREFIX]`: label what is already there.
//!
//! Objects are listed in key order (ListObjectsV2) and handed, a batch at a
//! time, to [`dispatcher::dispatch::dispatch_changes`] — the dispatcher's own
//! filters, claims, chunking, manifests and submission — so a backfill can
//! neither label what the pipeline would skip nor label an upload twice:
//! each image's QUEUED claim is the same conditional write an S3 event makes.
//!
//! A listed object's revision is its LastModified time, which ranks below any
//! S3 event's sequencer: an object the events already handled (in any state)
//! is left alone, and objects modified after the backfill started are left
//! to their events.
//!
//! **Resumption.** Progress is saved to a small state file after every batch
//! (the last key whose batch was fully dispatched, and the run's claim
//! token); the same command resumes after that key. Ctrl-C finishes the
//! batch in hand and saves. If the process dies mid-batch, the re-run lists
//! that batch again: images it had claimed but not submitted are retaken by
//! the same claim token; images already submitted are recognised as
//! duplicates. Nothing is lost and nothing is submitted twice.

use crate::args::BackfillArgs;
use crate::aws::{describe, table_error};
use crate::output::fields;
use crate::record::Item;
use crate::{settings, Context, Interrupted};
use anyhow::{anyhow, Context as _};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_s3::primitives::DateTimeFormat;
use dispatcher::config::Config;
use dispatcher::dispatch::{dispatch_changes, Summary};
use dispatcher::event::{Change, ObjectChange};
use dispatcher::plan::{decide, plan_jobs, Decision};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use labeler_core::schema;
use labeler_core::store::{self, image_key, ClaimKind, Clock};
use labeler_core::Revision;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a backfill did (or, in a dry run, would do), cumulated over runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Objects listed.
    pub listed: u64,
    /// Objects modified after the backfill started: their S3 events handle them.
    pub left_to_events: u64,
    /// Images queued for labeling.
    pub queued: u64,
    /// Batch jobs submitted (array jobs count once).
    pub jobs: u64,
    /// Objects that already have a record for this or a newer upload.
    pub already_recorded: u64,
    /// Objects recorded SKIPPED (wrong suffix, empty, too large).
    pub skipped: u64,
    /// Objects outside the dispatcher's prefixes (and manifests).
    pub ignored: u64,
}

impl Totals {
    fn add(&mut self, s: &Summary) {
        self.queued += s.images_queued as u64;
        self.jobs += s.jobs_submitted as u64;
        self.already_recorded += (s.duplicates + s.superseded) as u64;
        self.skipped += s.skipped as u64;
        self.ignored += s.ignored as u64;
    }
}

/// The saved progress of one backfill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Results table.
    pub table: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Claim token of this backfill, reused when resuming.
    pub claim: String,
    /// When the backfill started (Unix milliseconds); later objects are left to events.
    pub started_at_millis: u64,
    /// Every key up to and including this one has been dispatched.
    pub done_through: Option<String>,
    /// What the runs so far did.
    pub totals: Totals,
}

impl State {
    fn new(table: &str, bucket: &str, prefix: &str, now: Clock) -> Self {
        Self {
            version: 1,
            table: table.to_owned(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            claim: format!("backfill-{}-{:016x}", now.unix_millis, fastrand::u64(..)),
            started_at_millis: now.unix_millis,
            done_through: None,
            totals: Totals::default(),
        }
    }

    fn matches(&self, table: &str, bucket: &str, prefix: &str) -> bool {
        self.version == 1 && self.table == table && self.bucket == bucket && self.prefix == prefix
    }
}

/// Default progress file: one per table, bucket and prefix, under
/// `$XDG_STATE_HOME/image-labeler` (or `~/.local/state/image-labeler`).
pub fn default_state_file(table: &str, bucket: &str, prefix: &str) -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .context("neither XDG_STATE_HOME nor HOME is set; pass --state-file")?,
        )
        .join(".local/state"),
    };
    let digest = Sha256::digest(format!("{table}\0{bucket}\0{prefix}"));
    Ok(base
        .join("image-labeler")
        .join(format!("backfill-{}.json", &hex::encode(digest)[..16])))
}

fn load_state(path: &Path) -> anyhow::Result<Option<State>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "progress file {} is unreadable; pass --restart to start over",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading progress file {}", path.display())),
    }
}

/// Writes the state atomically (a temporary file renamed over the old one).
fn save_state(path: &Path, state: &State) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The change a listed object stands for. Its revision is its LastModified
/// time; the listing's ETag comes in quotes, events' without.
pub fn listed_change(
    bucket: &str,
    object: &aws_sdk_s3::types::Object,
    fallback: Clock,
) -> Option<ObjectChange> {
    let key = object.key()?.to_owned();
    let time = object
        .last_modified()
        .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
        .unwrap_or_else(|| schema::rfc3339_millis(fallback.unix_millis));
    let revision = Revision::from_event_time(&time).ok()?;
    Some(ObjectChange {
        change: Change::Created,
        bucket: bucket.to_owned(),
        key,
        revision,
        version_id: None,
        etag: object.e_tag().map(|e| e.trim_matches('"').to_owned()),
        size: object.size().map(|s| s.max(0) as u64),
        delete_marker: false,
    })
}

fn modified_millis(object: &aws_sdk_s3::types::Object) -> Option<u64> {
    object
        .last_modified()
        .and_then(|t| t.to_millis().ok())
        .map(|m| m.max(0) as u64)
}

/// Runs the backfill.
pub async fn run(ctx: &Context, args: &BackfillArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let cfg = settings::resolve(ctx.sdk(), ctx.table.as_deref(), &args.settings).await?;
    let bucket = &args.uri.bucket;
    let prefix = &args.uri.key;
    let now = Clock::now();
    let state_path = match &args.state_file {
        Some(p) => p.clone(),
        None => default_state_file(&cfg.table, bucket, prefix)?,
    };
    let saved = if args.restart || args.dry_run {
        None
    } else {
        load_state(&state_path)?.filter(|s| s.matches(&cfg.table, bucket, prefix))
    };
    let resumed_after = saved.as_ref().and_then(|s| s.done_through.clone());
    let mut state = saved.unwrap_or_else(|| State::new(&cfg.table, bucket, prefix, now));
    if !args.dry_run {
        // Saved before the first claim, so a crash can always be resumed
        // with the same claim token.
        save_state(&state_path, &state)?;
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: finishing the batch in hand and saving progress (Ctrl-C again to abort)");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });

    let progress = progress_bar(args.json);
    if let Some(key) = &resumed_after {
        progress.println(format!(
            "resuming after {key:?} ({} objects listed before)",
            state.totals.listed
        ));
    }
    let s3 = ctx.s3();
    let mut batch: Vec<ObjectChange> = Vec::new();
    let mut listed_now = 0u64;
    let mut token: Option<String> = None;
    let mut last_key: Option<String> = None;
    let mut stopped_early = false;
    'listing: loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_start_after(if token.is_none() {
                state.done_through.clone()
            } else {
                None
            })
            .set_continuation_token(token.take())
            .max_keys(args.page_size)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|se| se.is_no_such_bucket())
                {
                    anyhow!("bucket {bucket:?} does not exist")
                } else {
                    anyhow!("listing s3://{bucket}/{prefix}: {}", describe(&e))
                }
            })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            listed_now += 1;
            state.totals.listed += 1;
            last_key = Some(key.to_owned());
            if modified_millis(object).is_some_and(|m| m > state.started_at_millis) {
                state.totals.left_to_events += 1;
            } else if let Some(change) = listed_change(bucket, object, now) {
                batch.push(change);
            }
            progress.inc(1);
            if batch.len() as u64 >= args.settings.batch {
                flush(
                    ctx,
                    &cfg,
                    args,
                    &mut state,
                    &mut batch,
                    &last_key,
                    &state_path,
                )
                .await?;
                progress.set_message(message(&state.totals));
            }
            if args.limit.is_some_and(|limit| listed_now >= limit)
                || interrupted.load(Ordering::SeqCst)
            {
                stopped_early = true;
                break 'listing;
            }
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    flush(
        ctx,
        &cfg,
        args,
        &mut state,
        &mut batch,
        &last_key,
        &state_path,
    )
    .await?;
    progress.finish_and_clear();
    watcher.abort();
    // A --limit that ends exactly at the last object still leaves the file;
    // the next run finds nothing after it and finishes.
    let complete = !stopped_early;
    if complete && !args.dry_run {
        match std::fs::remove_file(&state_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(format!("removing {}", state_path.display())),
        }
    }
    report(
        out,
        args,
        &state,
        complete,
        resumed_after.as_deref(),
        &state_path,
    )?;
    if interrupted.load(Ordering::SeqCst) {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Dispatches (or, in a dry run, previews) the batch and saves progress.
async fn flush(
    ctx: &Context,
    cfg: &Config,
    args: &BackfillArgs,
    state: &mut State,
    batch: &mut Vec<ObjectChange>,
    last_key: &Option<String>,
    state_path: &Path,
) -> anyhow::Result<()> {
    let changes = std::mem::take(batch);
    if !changes.is_empty() {
        let summary = if args.dry_run {
            preview(ctx, cfg, &state.claim, changes).await?
        } else {
            dispatch_changes(
                changes,
                &state.claim,
                ClaimKind::New,
                &ctx.dispatch_clients(),
                cfg,
                Clock::now(),
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "{e}; progress is saved through the previous batch: run the same command again to resume"
                )
            })?
        };
        state.totals.add(&summary);
    }
    state.done_through = last_key.clone().or(state.done_through.take());
    if !args.dry_run {
        save_state(state_path, state)?;
    }
    Ok(())
}

/// What dispatching `changes` would do: the dispatcher's filters and
/// chunking, and its claim conditions evaluated against the stored records.
async fn preview(
    ctx: &Context,
    cfg: &Config,
    claim: &str,
    changes: Vec<ObjectChange>,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let mut candidates = Vec::new();
    for change in &changes {
        match decide(change, cfg) {
            Decision::Label(image) => candidates.push((image, None)),
            Decision::Skip(image, reason) => candidates.push((image, Some(reason))),
            Decision::Remove(_) | Decision::Ignore(_) => summary.ignored += 1,
        }
    }
    let keys: Vec<(String, String)> = candidates
        .iter()
        .map(|(i, _)| (i.bucket.clone(), i.key.clone()))
        .collect();
    let stored = read_records(ctx, &cfg.table, &keys).await?;
    let now = Clock::now();
    let mut queued = Vec::new();
    for (image, skip) in candidates {
        let record = stored.get(&schema::image_pk(&image.bucket, &image.key));
        let wins = match skip {
            None => store::claim_would_win(
                record,
                &image,
                claim,
                ClaimKind::New,
                now,
                cfg.claim_lease_secs,
            ),
            Some(_) => store::newer_than_stored(record, &image),
        };
        match (wins, skip) {
            (true, None) => queued.push(image),
            (true, Some(_)) => summary.skipped += 1,
            (false, _) => summary.duplicates += 1,
        }
    }
    summary.images_queued = queued.len();
    summary.jobs_submitted = plan_jobs(queued, cfg)?.len();
    Ok(summary)
}

/// Reads image records by key, 100 per BatchGetItem, retrying unprocessed keys.
async fn read_records(
    ctx: &Context,
    table: &str,
    keys: &[(String, String)],
) -> anyhow::Result<HashMap<String, Item>> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(100) {
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|(b, k)| image_key(b, k)).collect()))
                .consistent_read(true)
                .build()?,
        );
        let mut rounds = 0;
        while let Some(keys) = request.take() {
            rounds += 1;
            let out = ctx
                .dynamodb()
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await
                .map_err(|e| table_error(table, e))?;
            for item in out
                .responses
                .unwrap_or_default()
                .remove(table)
                .unwrap_or_default()
            {
                if let Some(AttributeValue::S(pk)) = item.get(schema::PK) {
                    found.insert(pk.clone(), item);
                }
            }
            request = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys().is_empty());
            if request.is_some() {
                anyhow::ensure!(
                    rounds < 20,
                    "DynamoDB kept keys unprocessed after 20 rounds"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50 << rounds.min(6))).await;
            }
        }
    }
    Ok(found)
}

fn progress_bar(json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {pos} objects listed ({per_sec}) {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn message(t: &Totals) -> String {
    format!(
        "· {} queued in {} jobs · {} already recorded · {} skipped",
        t.queued, t.jobs, t.already_recorded, t.skipped
    )
}

#[derive(Serialize)]
struct JsonReport<'a> {
    uri: String,
    dry_run: bool,
    complete: bool,
    resumed_after: Option<&'a str>,
    state_file: Option<String>,
    #[serde(flatten)]
    totals: &'a Totals,
}

fn report(
    out: &mut dyn Write,
    args: &BackfillArgs,
    state: &State,
    complete: bool,
    resumed_after: Option<&str>,
    state_path: &Path,
) -> anyhow::Result<()> {
    let t = &state.totals;
    let keep_file = !complete && !args.dry_run;
    if args.json {
        serde_json::to_writer(
            &mut *out,
            &JsonReport {
                uri: args.uri.to_string(),
                dry_run: args.dry_run,
                complete,
                resumed_after,
                state_file: keep_file.then(|| state_path.display().to_string()),
                totals: t,
            },
        )?;
        writeln!(out)?;
        return Ok(());
    }
    let (queued, skipped) = if args.dry_run {
        ("would queue", "would record SKIPPED")
    } else {
        ("queued for labeling", "recorded SKIPPED")
    };
    let jobs = format!(
        "{} in {} Batch job{}",
        t.queued,
        t.jobs,
        if t.jobs == 1 { "" } else { "s" }
    );
    let mut pairs = vec![
        ("objects listed", t.listed.to_string()),
        (queued, jobs),
        ("already recorded", t.already_recorded.to_string()),
        (skipped, t.skipped.to_string()),
        ("outside the prefixes", t.ignored.to_string()),
        ("left to S3 events", t.left_to_events.to_string()),
    ];
    if let Some(key) = resumed_after {
        pairs.push(("resumed after", key.to_owned()));
    }
    let title = if args.dry_run {
        "dry run of backfill"
    } else {
        "backfill"
    };
    writeln!(out, "{title} {}", args.uri)?;
    out.write_all(fields(&pairs).as_bytes())?;
    if keep_file {
        writeln!(
            out,
            "stopped before the end; progress saved in {}: run the same command again to continue",
            state_path.display()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::primitives::DateTime;
    use aws_sdk_s3::types::Object;

    #[test]
    fn a_listed_object_becomes_a_created_change_ranked_by_its_time() {
        let object = Object::builder()
            .key("holiday/beach day.jpg")
            .e_tag("\"9b2cf535f27731c974343645a3985328\"")
            .size(1234)
            .last_modified(DateTime::from_millis(1_767_225_600_123))
            .build();
        let change = listed_change("photos", &object, Clock { unix_millis: 0 }).unwrap();
        assert_eq!(change.change, Change::Created);
        assert_eq!(change.key, "holiday/beach day.jpg");
        assert_eq!(
            change.etag.as_deref(),
            Some("9b2cf535f27731c974343645a3985328")
        );
        assert_eq!(change.size, Some(1234));
        assert_eq!(
            change.revision,
            Revision::from_event_time("2026-01-01T00:00:00.123Z").unwrap()
        );
        // Any S3 event's sequencer outranks a listing.
        assert!(change.revision < Revision::from_sequencer("0055AED6DCD90281E5").unwrap());
    }

    #[test]
    fn state_files_are_per_table_bucket_and_prefix() {
        let a = default_state_file("t", "photos", "").unwrap();
        let b = default_state_file("t", "photos", "2024/").unwrap();
        let c = default_state_file("u", "photos", "").unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, default_state_file("t", "photos", "").unwrap());
    }

    #[test]
    fn state_round_trips_and_matches_only_its_backfill() {
        let dir = std::env::temp_dir().join(format!("labeler-state-{}", fastrand::u64(..)));
        let path = dir.join("s.json");
        let mut state = State::new("t", "photos", "p/", Clock { unix_millis: 5 });
        state.done_through = Some("p/k".into());
        state.totals.queued = 3;
        save_state(&path, &state).unwrap();
        let back = load_state(&path).unwrap().unwrap();
        assert_eq!(back, state);
        assert!(back.matches("t", "photos", "p/"));
        assert!(!back.matches("t", "photos", "q/"));
        assert_eq!(load_state(&dir.join("missing.json")).unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        let err = load_state(&path).unwrap_err().to_string();
        assert!(err.contains("--restart"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
