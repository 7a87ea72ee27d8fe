//! Image records written exactly as the dispatcher and the worker write
//! them (claim, take, result), for tests and benchmarks that need a results
//! table in a given state without running the whole pipeline.

use labeler_core::labeling::{self, record_failed, record_labeled, Attempt};
use labeler_core::schema::Label;
use labeler_core::store::{self, Clock, WriteOutcome};
use labeler_core::ImageRef;

/// The Batch job the seeded records name.
pub const JOB_ID: &str = "job-1";

fn attempt(n: u32) -> Attempt {
    Attempt {
        job_id: Some(JOB_ID.into()),
        owner: JOB_ID.into(),
        attempt: n,
    }
}

async fn claim_and_take(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    image: &ImageRef,
    attempt: &Attempt,
) -> anyhow::Result<()> {
    let now = Clock::now();
    let claimed = store::claim(db, table, image, "seed", now, 900).await?;
    anyhow::ensure!(claimed == WriteOutcome::Written, "claim: {claimed:?}");
    let taken = labeling::take(db, table, image, attempt, now).await?;
    anyhow::ensure!(taken == WriteOutcome::Written, "take: {taken:?}");
    Ok(())
}

/// Records `image` LABELED with `labels`.
pub async fn labeled(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    image: &ImageRef,
    labels: &[Label],
) -> anyhow::Result<()> {
    let attempt = attempt(1);
    claim_and_take(db, table, image, &attempt).await?;
    let outcome = record_labeled(
        db,
        table,
        image,
        &labeling::Detected::as_is(labels, Some("3.0")),
        &attempt,
        Clock::now(),
    )
    .await?;
    anyhow::ensure!(outcome == WriteOutcome::Written, "labeled: {outcome:?}");
    Ok(())
}

/// Records `image` FAILED for `reason`.
pub async fn failed(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    image: &ImageRef,
    reason: &str,
) -> anyhow::Result<()> {
    let attempt = attempt(2);
    claim_and_take(db, table, image, &attempt).await?;
    let outcome = record_failed(db, table, image, reason, &attempt, Clock::now()).await?;
    anyhow::ensure!(outcome == WriteOutcome::Written, "failed: {outcome:?}");
    Ok(())
}

/// Records `image` SKIPPED for `reason`.
pub async fn skipped(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    image: &ImageRef,
    reason: &str,
) -> anyhow::Result<()> {
    store::record_skipped(db, table, image, reason, Clock::now()).await?;
    Ok(())
}
