//! `labeler reconcile`: one reconciler pass, on demand.
//!
//! The same pass the dispatcher runs on its schedule
//! ([`dispatcher::dispatch::reconcile_now`]), configured like `backfill` and `retry`
//! from the deployed function's environment: old QUEUED records are found
//! through the sparse status index, their jobs are asked about, and each is
//! left to run, dispatched again or recorded FAILED.

use crate::args::ReconcileArgs;
use crate::output::fields;
use crate::{settings, Context};
use labeler_core::store::Clock;
use std::io::Write;

/// Runs one pass and prints its report.
pub async fn run(ctx: &Context, args: &ReconcileArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut cfg = settings::resolve(ctx.sdk(), ctx.table.as_deref(), &args.settings).await?;
    if let Some(secs) = args.older_than {
        cfg.reconcile.after_secs = secs;
    }
    let report =
        dispatcher::dispatch::reconcile_now(&ctx.dispatch_clients(), &cfg, Clock::now()).await?;
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    let pairs = vec![
        ("queued records examined", report.examined.to_string()),
        ("still running or leased", report.waiting.to_string()),
        ("dispatched again", report.redispatched.to_string()),
        ("failed with their job", report.failed.to_string()),
        ("given up", report.gave_up.to_string()),
        ("changed meanwhile", report.changed.to_string()),
    ];
    out.write_all(fields(&pairs).as_bytes())?;
    Ok(())
}
