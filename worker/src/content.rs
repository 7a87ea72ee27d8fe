//! Content reuse in the worker ([`labeler_core::reuse`]): the digest of the
//! bytes, the lookup before a DetectLabels call, and the entry after one.
//!
//! The key is the SHA-256 of the bytes ([`source::digest`]), never the
//! event's ETag: an ETag can be forged (MD5), depends on the part size
//! (multipart) or is no digest (SSE-KMS); the event's describes the upload,
//! not what is in the bucket when the job reads it. An entry is served only
//! while the label model that produced it is the current one
//! ([`Models`]), and stored only when DetectLabels read the bytes that were
//! hashed ([`remember`]).

use crate::source::{self, Digested};
use aws_sdk_dynamodb::Client;
use labeler_core::labeling::{Detected, Reused};
use labeler_core::reuse::{self, ContentKey, CurrentModel};
use labeler_core::store::Clock;
use labeler_core::{ImageRef, LabelOptions};
use std::sync::Mutex;
use tracing::{info, warn};

/// Content reuse for one run: its settings and the label model it serves.
#[derive(Debug)]
pub(crate) struct ContentReuse {
    ttl_days: u64,
    table: String,
    /// The backend's part of keys and marker ([`crate::Backend::reuse_scope`]).
    scope: Option<String>,
    models: Mutex<CurrentModel>,
}

impl ContentReuse {
    /// Reuse of entries kept `ttl_days` in `table`, serving those of the
    /// fleet's current label model (read once; a failed read serves nothing
    /// until this run pays for an answer).
    pub(crate) async fn load(
        ttl_days: u64,
        db: &Client,
        table: &str,
        scope: Option<String>,
    ) -> Self {
        let current = reuse::scoped_current_model(db, table, scope.as_deref())
            .await
            .unwrap_or_else(|e| {
            warn!(error = %e, "could not read the current label model; reusing nothing until an answer names it");
            CurrentModel::Unknown
        });
        Self {
            ttl_days,
            table: table.to_owned(),
            scope,
            models: Mutex::new(current),
        }
    }

    fn current(&self) -> CurrentModel {
        self.models.lock().expect("never poisoned").clone()
    }

    /// Notes the model of a paid answer; true when it differs from the one
    /// served so far (the fleet's marker is then written).
    fn saw(&self, model_version: Option<&str>) -> bool {
        let mut current = self.models.lock().expect("never poisoned");
        if current.is(model_version) {
            return false;
        }
        *current = CurrentModel::Known(model_version.map(str::to_owned));
        true
    }
}

/// What a lookup found for an image's bytes.
#[derive(Debug)]
pub(crate) struct Lookup {
    key: ContentKey,
    read: Digested,
    /// Labels of the same bytes by the current model, when stored.
    pub(crate) found: Option<Reused>,
}

/// Hashes `image`'s bytes and looks for labels of them. `None` when the
/// bytes could not be read or the entry could not be looked up: the image
/// is then labeled as if reuse were off (logged; never a wrong label).
pub(crate) async fn look_up(
    reuse: &ContentReuse,
    (s3, db): (&aws_sdk_s3::Client, &Client),
    options: &LabelOptions,
    image: &ImageRef,
) -> Option<Lookup> {
    let (bucket, object) = (image.bucket.as_str(), image.key.as_str());
    let read = match source::digest(s3, image).await {
        Ok(read) => read,
        Err(e) => {
            warn!(bucket, key = object, error = %e, "could not hash the object; labeling without reuse");
            return None;
        }
    };
    let key = ContentKey::scoped(&read.content, options, reuse.scope.as_deref());
    let current = reuse.current();
    match reuse::lookup(db, &reuse.table, &key, &current, Clock::now()).await {
        Ok(found) => Some(Lookup { key, read, found }),
        Err(e) => {
            warn!(bucket, key = object, error = %e, "content lookup failed; labeling without reuse");
            None
        }
    }
}

/// Stores the content entry of labels just written for `image` — after the
/// record: a crash in between costs the next copy one DetectLabels call,
/// nothing else — unless DetectLabels may have read other bytes than those
/// hashed ([`source::unchanged`]). Notes the answer's label model first.
/// Failures are logged: the entry is an optimisation.
pub(crate) async fn remember(
    reuse: &ContentReuse,
    (s3, db): (&aws_sdk_s3::Client, &Client),
    (image, lookup): (&ImageRef, &Lookup),
    detected: &Detected<'_>,
) {
    let (bucket, object) = (image.bucket.as_str(), image.key.as_str());
    let table = reuse.table.as_str();
    if reuse.saw(detected.model_version) {
        let marker = reuse::scoped_model_marker(
            detected.model_version,
            reuse.scope.as_deref(),
            Clock::now(),
        );
        if let Err(e) = reuse::remember(db, table, marker).await {
            warn!(error = %e, "could not record the current label model");
        }
    }
    if !source::unchanged(s3, image, &lookup.read).await {
        info!(
            bucket,
            key = object,
            "the object changed while it was labeled; its labels are not remembered as content"
        );
        return;
    }
    let entry = reuse::entry(&lookup.key, image, detected, Clock::now(), reuse.ttl_days);
    if let Err(e) = reuse::remember(db, table, entry).await {
        warn!(bucket, key = object, error = %e, "could not store the content entry; copies will be labeled again");
    }
}
