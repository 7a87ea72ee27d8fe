//! The dispatcher's pure core: object changes in, decisions and jobs out.

use crate::config::Config;
use crate::event::{Change, ObjectChange};
use labeler_core::job::{chunk_images, plan_job, ContractError, PlannedJob, MAX_ARRAY_SIZE};
use labeler_core::{ImageRef, Revision};
use std::collections::HashMap;

/// What to do about one object change.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Label it.
    Label(ImageRef),
    /// Record it SKIPPED with this reason.
    Skip(ImageRef, String),
    /// Replace its record by a tombstone and drop its label entries (unless
    /// a newer upload owns them).
    Remove(Removal),
    /// Do nothing; the reason is logged.
    Ignore(String),
}

/// Applies the filters to one change.
pub fn decide(change: &ObjectChange, cfg: &Config) -> Decision {
    let key = change.key.as_str();
    if let Some(prefix) = cfg
        .exclude_prefixes
        .iter()
        .find(|p| key.starts_with(p.as_str()))
    {
        return Decision::Ignore(format!("key is under excluded prefix {prefix:?}"));
    }
    if !cfg.include_prefixes.is_empty()
        && !cfg
            .include_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    {
        return Decision::Ignore("key is outside the included prefixes".into());
    }
    if change.change == Change::Removed {
        return if cfg.delete_on_remove {
            let version = (!change.delete_marker)
                .then(|| change.version_id.clone())
                .flatten();
            let reason = match (&version, change.delete_marker) {
                (Some(v), _) => format!("version {v} was deleted"),
                (None, true) => "a delete marker hides the object".to_owned(),
                (None, false) => "the object was deleted".to_owned(),
            };
            Decision::Remove(Removal {
                bucket: change.bucket.clone(),
                key: change.key.clone(),
                revision: change.revision.clone(),
                version,
                marker: change.delete_marker,
                reason,
            })
        } else {
            Decision::Ignore("object removed; DELETE_ON_REMOVE is off".into())
        };
    }
    let image = ImageRef {
        bucket: change.bucket.clone(),
        key: change.key.clone(),
        revision: change.revision.clone(),
        version_id: change.version_id.clone(),
        etag: change.etag.clone(),
        size: change.size,
    };
    let lower = key.to_lowercase();
    if !cfg.suffixes.iter().any(|s| lower.ends_with(s.as_str())) {
        return Decision::Skip(
            image,
            format!(
                "not an image this pipeline labels: the key does not end in {}",
                cfg.suffixes.join(", ")
            ),
        );
    }
    match change.size {
        Some(0) => Decision::Skip(image, "object is empty (0 bytes)".into()),
        Some(size) if size > cfg.max_object_bytes => Decision::Skip(
            image,
            format!(
                "object is {size} bytes; this pipeline labels objects of at most {} bytes (MAX_OBJECT_BYTES)",
                cfg.max_object_bytes
            ),
        ),
        _ => Decision::Label(image),
    }
}

/// A delete to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Revision of the delete.
    pub revision: Revision,
    /// `Some(v)` for a permanent delete of version `v` in a versioned
    /// bucket: only the record of that version is affected.
    pub version: Option<String>,
    /// A delete marker was created: the key is tombstoned only if S3 shows
    /// no version current when the event is handled (its undelete may have
    /// come first).
    pub marker: bool,
    /// What happened, for the tombstone.
    pub reason: String,
}

impl Removal {
    /// The tombstone this removal writes.
    pub fn deletion(&self) -> labeler_core::store::Deletion<'_> {
        labeler_core::store::Deletion {
            bucket: &self.bucket,
            key: &self.key,
            revision: &self.revision,
            version: self.version.as_deref(),
            reason: &self.reason,
        }
    }
}

/// Images tagged with the delivery they came from.
pub type Tagged<T> = Vec<(T, ImageRef)>;

/// Keeps only the newest revision of each key; returns the survivors (with
/// the delivery they came from) and the superseded ones.
pub fn newest_per_key<T: Clone>(images: Tagged<T>) -> (Tagged<T>, Tagged<T>) {
    let mut newest: HashMap<(String, String), usize> = HashMap::new();
    for (i, (_, img)) in images.iter().enumerate() {
        let k = (img.bucket.clone(), img.key.clone());
        match newest.get(&k) {
            Some(&j) if images[j].1.revision >= img.revision => {}
            _ => {
                newest.insert(k, i);
            }
        }
    }
    let mut kept = Vec::new();
    let mut superseded = Vec::new();
    for (i, entry) in images.into_iter().enumerate() {
        if newest.get(&(entry.1.bucket.clone(), entry.1.key.clone())) == Some(&i) {
            kept.push(entry);
        } else {
            superseded.push(entry);
        }
    }
    (kept, superseded)
}

/// Packs images into as few jobs as possible: chunks of `images_per_job`,
/// one array job per up to 10,000 chunks.
pub fn plan_jobs(images: Vec<ImageRef>, cfg: &Config) -> Result<Vec<PlannedJob>, ContractError> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let chunks = chunk_images(images, cfg.images_per_job);
    let mut jobs = Vec::new();
    let mut rest = chunks.into_iter().peekable();
    while rest.peek().is_some() {
        let group: Vec<_> = rest.by_ref().take(MAX_ARRAY_SIZE).collect();
        jobs.push(plan_job(
            &cfg.table,
            cfg.label_options,
            group,
            &cfg.manifests,
        )?);
    }
    Ok(jobs)
}

/// Chunks a finished job (or array child) held: all of them for a plain job
/// or an array parent, only its own for an array child.
pub fn chunks_of_ended_job(
    chunks: &[Vec<ImageRef>],
    array_index: Option<usize>,
) -> Vec<(Option<usize>, &[ImageRef])> {
    match array_index {
        Some(i) => chunks
            .get(i)
            .map(|c| vec![(Some(i), c.as_slice())])
            .unwrap_or_default(),
        None if chunks.len() == 1 => vec![(None, chunks[0].as_slice())],
        None => chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (Some(i), c.as_slice()))
            .collect(),
    }
}

/// Why a job event leaves the records alone ([`failed_job_to_handle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftAlone {
    /// Nothing to do with this event, for this reason.
    Ignored(&'static str),
    /// The job failed for an outage ([`crate::failure`]): its images stay
    /// QUEUED for the reconciler.
    Outage,
}

/// The labeling spec of a job whose FAILED event must fail the images it
/// still holds; or why the event leaves the records alone: a job of
/// another queue or without a spec, one that did not fail, an array parent
/// (each child's own event speaks for its chunk; the parent's would fail
/// images a child left QUEUED for an outage or holds in another attempt),
/// or a failure that is an outage.
pub fn failed_job_to_handle<'a>(
    job: &'a crate::event::JobEnded,
    queue: &str,
) -> Result<&'a str, LeftAlone> {
    if !is_our_queue(&job.job_queue, queue) {
        return Err(LeftAlone::Ignored("a job of another queue"));
    }
    let Some(raw) = job.parameters.get(labeler_core::job::JOB_PARAMETER) else {
        return Err(LeftAlone::Ignored("a job without a labeling spec"));
    };
    if job.status != "FAILED" {
        return Err(LeftAlone::Ignored("the job did not fail"));
    }
    if job.array_size.is_some() {
        return Err(LeftAlone::Ignored(
            "an array parent: its children's events speak for their chunks",
        ));
    }
    if job.failure.cause() == crate::failure::Cause::Outage {
        return Err(LeftAlone::Outage);
    }
    Ok(raw)
}

/// The parent job id of an array child id (`parent:index`), or the id itself.
pub fn parent_job_id(job_id: &str) -> &str {
    job_id.split(':').next().unwrap_or(job_id)
}

/// True when `queue` (name or ARN from an event) is the configured queue.
pub fn is_our_queue(queue: &str, configured: &str) -> bool {
    let name = |q: &str| q.rsplit('/').next().unwrap_or(q).to_owned();
    queue == configured || name(queue) == name(configured)
}

/// The reason recorded on an image whose Batch job failed.
pub fn job_failed_reason(
    job_name: &str,
    job_id: &str,
    batch_reason: &impl std::fmt::Display,
) -> String {
    format!("Batch job {job_name} ({job_id}) failed: {batch_reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::JobEnded;
    use crate::failure::JobFailure;

    fn failed(exit_code: i64) -> JobEnded {
        JobEnded {
            job_id: "j-1".into(),
            job_name: "labeler-x".into(),
            job_queue: "arn:aws:batch:us-east-1:123456789012:job-queue/jobs".into(),
            status: "FAILED".into(),
            failure: JobFailure {
                status_reason: Some("Essential container in task exited".into()),
                container_reason: None,
                exit_code: Some(exit_code),
            },
            parameters: [(labeler_core::job::JOB_PARAMETER.to_owned(), "{}".to_owned())].into(),
            array_index: None,
            array_size: None,
        }
    }

    #[test]
    fn only_a_failure_about_the_images_of_our_own_plain_job_or_child_fails_them() {
        let queue = "jobs";
        assert_eq!(failed_job_to_handle(&failed(137), queue), Ok("{}"));
        assert_eq!(
            failed_job_to_handle(&failed(3), queue),
            Err(LeftAlone::Outage)
        );
        let parent = JobEnded {
            array_size: Some(12),
            ..failed(137)
        };
        assert!(matches!(
            failed_job_to_handle(&parent, queue),
            Err(LeftAlone::Ignored(why)) if why.contains("array parent")
        ));
        let elsewhere = JobEnded {
            job_queue: "other".into(),
            ..failed(137)
        };
        assert!(failed_job_to_handle(&elsewhere, queue).is_err());
        let succeeded = JobEnded {
            status: "SUCCEEDED".into(),
            ..failed(137)
        };
        assert!(failed_job_to_handle(&succeeded, queue).is_err());
    }
}
