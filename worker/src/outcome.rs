//! What a run did: one image's outcome ([`ImageOutcome`]) and the sum of
//! them over a chunk ([`Outcome`]), which decides the exit code and feeds
//! the metrics ([`crate::telemetry`]).

use crate::error::{full_chain, ReasonClass, Refusal, WorkerError};
use crate::exit::ExitCode;
use labeler_core::{ImageRef, Revision, Status};
use serde::Serialize;
use tracing::{error, info, warn};

/// Failed images per class of reason, for [`Outcome::failed_by_class`].
pub type ClassCounts = std::collections::BTreeMap<ReasonClass, usize>;

/// What happened to one image.
#[derive(Debug)]
pub(crate) enum ImageOutcome {
    /// Labels stored; the record is LABELED.
    Labeled {
        /// Labels stored.
        labels: usize,
        /// The image whose labels were reused (same content): no
        /// DetectLabels call was made for this one.
        reused_from: Option<String>,
    },
    /// The image cannot be labeled for good; the record is FAILED.
    Failed(Refusal),
    /// The record already had a terminal status for this upload: nothing
    /// done (a Batch retry or a duplicate job).
    AlreadyDone {
        /// The status found.
        status: Option<Status>,
    },
    /// A newer upload owns the record, or it is gone (the object was
    /// deleted): nothing done.
    Superseded {
        /// The newer upload, when there is one.
        newer: Option<Revision>,
    },
    /// Another job took the image first (a duplicate job), or its record
    /// is no longer this upload's QUEUED record: nothing done, no
    /// Rekognition call.
    TakenElsewhere,
    /// A transient fault outlasted the retries: the image stays QUEUED.
    Retryable(WorkerError),
}

/// What a run did, image by image, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Images in the chunk.
    pub images: usize,
    /// Images labeled by this run.
    pub labeled: usize,
    /// Of those, images labeled with the labels of an image with the same
    /// content, without a DetectLabels call.
    pub reused: usize,
    /// Images recorded FAILED by this run.
    pub failed: usize,
    /// Of those, how many per class of reason.
    #[serde(skip)]
    pub failed_by_class: ClassCounts,
    /// Images that already had a terminal record for their upload.
    pub already_done: usize,
    /// Images owned by a newer upload, or whose record is gone.
    pub superseded: usize,
    /// Images left QUEUED by transient faults.
    pub retryable: usize,
    /// Images never started or abandoned because of a shutdown.
    pub unfinished: usize,
}

impl Outcome {
    /// Images whose run ended, one way or another.
    pub fn finished(&self) -> usize {
        self.labeled + self.failed + self.already_done + self.superseded + self.retryable
    }

    /// What happened since `earlier`, an outcome of the same run.
    ///
    /// `earlier` is taken apart field by field, with no `..`: a new field
    /// does not compile until it is handled here.
    pub fn since(&self, earlier: &Outcome) -> Outcome {
        let Outcome {
            images: _,
            labeled,
            reused,
            failed,
            failed_by_class,
            already_done,
            superseded,
            retryable,
            unfinished,
        } = earlier;
        Outcome {
            images: self.images,
            labeled: self.labeled - labeled,
            reused: self.reused - reused,
            failed: self.failed - failed,
            failed_by_class: self
                .failed_by_class
                .iter()
                .map(|(class, n)| (*class, n - failed_by_class.get(class).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            already_done: self.already_done - already_done,
            superseded: self.superseded - superseded,
            retryable: self.retryable - retryable,
            unfinished: self.unfinished - unfinished,
        }
    }

    /// [`ExitCode::Success`] when every image has its terminal record (or
    /// is someone else's), [`ExitCode::Retryable`] otherwise.
    pub fn exit_code(&self) -> ExitCode {
        if self.retryable > 0 || self.unfinished > 0 {
            ExitCode::Retryable
        } else {
            ExitCode::Success
        }
    }

    /// Counts one image's outcome, and logs it.
    pub(crate) fn add(&mut self, image: &ImageRef, outcome: ImageOutcome) {
        let (bucket, key, revision) = (&image.bucket, &image.key, image.revision.as_str());
        match outcome {
            ImageOutcome::Labeled {
                labels,
                reused_from: None,
            } => {
                info!(bucket, key, revision, labels, "labeled");
                self.labeled += 1;
            }
            ImageOutcome::Labeled {
                labels,
                reused_from: Some(from),
            } => {
                info!(
                    bucket,
                    key,
                    revision,
                    labels,
                    reused_from = from.as_str(),
                    "labeled with the labels of the same content"
                );
                self.labeled += 1;
                self.reused += 1;
            }
            ImageOutcome::Failed(refusal) => {
                let (reason, class) = (refusal.reason.as_str(), refusal.class.as_str());
                warn!(bucket, key, revision, reason, class, "failed for good");
                self.failed += 1;
                *self.failed_by_class.entry(refusal.class).or_default() += 1;
            }
            ImageOutcome::AlreadyDone { status } => {
                let status = status.map(Status::as_str);
                info!(
                    bucket,
                    key, revision, status, "already done for this upload; nothing to do"
                );
                self.already_done += 1;
            }
            ImageOutcome::Superseded { newer } => {
                let newer = newer.as_ref().map(Revision::as_str);
                info!(
                    bucket,
                    key,
                    revision,
                    newer,
                    "a newer upload or a delete owns the record; nothing to do"
                );
                self.superseded += 1;
            }
            ImageOutcome::TakenElsewhere => {
                info!(
                    bucket,
                    key,
                    revision,
                    "another job owns this image, or it is no longer queued; nothing to do"
                );
                self.superseded += 1;
            }
            ImageOutcome::Retryable(e) => {
                let error = full_chain(&e);
                error!(
                    bucket,
                    key, revision, error, "left queued for the next attempt"
                );
                self.retryable += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_unfinished_image_asks_for_a_retry() {
        let done = Outcome {
            images: 3,
            labeled: 1,
            failed: 1,
            superseded: 1,
            ..Outcome::default()
        };
        assert_eq!(done.exit_code(), ExitCode::Success);
        let interrupted = Outcome {
            unfinished: 1,
            ..done.clone()
        };
        assert_eq!(interrupted.exit_code(), ExitCode::Retryable);
        let transient = Outcome {
            retryable: 1,
            ..done
        };
        assert_eq!(transient.exit_code(), ExitCode::Retryable);
    }

    #[test]
    fn since_subtracts_every_count_and_keeps_the_chunk_size() {
        let earlier = Outcome {
            images: 9,
            labeled: 2,
            reused: 1,
            failed: 1,
            failed_by_class: ClassCounts::from([(ReasonClass::TooLarge, 1)]),
            already_done: 1,
            superseded: 1,
            retryable: 0,
            unfinished: 0,
        };
        let now = Outcome {
            images: 9,
            labeled: 4,
            reused: 2,
            failed: 3,
            failed_by_class: ClassCounts::from([
                (ReasonClass::TooLarge, 1),
                (ReasonClass::NotAnImage, 2),
            ]),
            already_done: 2,
            superseded: 3,
            retryable: 1,
            unfinished: 1,
        };
        assert_eq!(
            now.since(&earlier),
            Outcome {
                images: 9,
                labeled: 2,
                reused: 1,
                failed: 2,
                failed_by_class: ClassCounts::from([(ReasonClass::NotAnImage, 2)]),
                already_done: 1,
                superseded: 2,
                retryable: 1,
                unfinished: 1,
            }
        );
    }
}
