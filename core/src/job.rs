//! The dispatcher → worker job contract.
//!
//! A Batch job carries one [`JobSpec`], serialised as compact JSON into the
//! single job parameter [`JOB_PARAMETER`]; the job definition's command passes
//! it to the worker as `--job Ref::job`. The spec holds one or more *chunks* of
//! images: a plain job has exactly one chunk, an array job has one chunk per
//! child and each child picks `chunks[AWS_BATCH_JOB_ARRAY_INDEX]`.
//!
//! SubmitJob payloads are capped at 30 KiB, so when the inline form would be
//! larger than [`INLINE_JOB_MAX_BYTES`] the chunks move into a [`Manifest`]
//! object in S3, written once under a content-addressed name before the job is
//! submitted and never changed, so every Batch retry sees the same images.

use crate::revision::Revision;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name of the Batch job parameter that carries the serialised [`JobSpec`].
pub const JOB_PARAMETER: &str = "job";
/// Version of the serialised form; bumped on any incompatible change.
pub const CONTRACT_VERSION: u32 = 1;
/// Largest inline spec, in bytes. SubmitJob's whole request is capped at
/// 30 KiB; the rest is left for the job name, queue, definition and tags.
pub const INLINE_JOB_MAX_BYTES: usize = 20 * 1024;
/// AWS Batch array jobs have between 2 and 10,000 children.
pub const MAX_ARRAY_SIZE: usize = 10_000;
/// Longest valid Batch job name.
pub const MAX_JOB_NAME_LEN: usize = 128;

/// One upload of one object: what the worker labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    /// Bucket holding the object.
    pub bucket: String,
    /// The object's exact (decoded) key.
    pub key: String,
    /// Which upload of the key this is; orders uploads of the same key.
    pub revision: Revision,
    /// S3 version id, when the bucket is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// ETag reported by the event, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Object size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// How the worker asks Rekognition for labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelOptions {
    /// `MaxLabels` of DetectLabels.
    pub max_labels: u32,
    /// `MinConfidence` of DetectLabels, in percent.
    pub min_confidence: f32,
}

impl Default for LabelOptions {
    fn default() -> Self {
        Self {
            max_labels: 50,
            min_confidence: 70.0,
        }
    }
}

/// Where a job's chunks are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ImageSource {
    /// The chunks themselves, small enough for the job parameter.
    Inline(Vec<Vec<ImageRef>>),
    /// A manifest object in S3 holding the chunks.
    Manifest(ManifestRef),
}

/// Pointer to a [`Manifest`] object, with what is needed to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRef {
    /// Bucket of the manifest object.
    pub bucket: String,
    /// Key of the manifest object.
    pub key: String,
    /// Hex SHA-256 of the manifest body; the worker refuses a changed one.
    pub sha256: String,
    /// Number of chunks in the manifest (the array size).
    pub chunks: u32,
    /// Number of images over all chunks.
    pub images: u32,
}

/// Body of a manifest object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`CONTRACT_VERSION`] at the time of writing.
    pub v: u32,
    /// The chunks, one per array child.
    pub chunks: Vec<Vec<ImageRef>>,
}

/// Everything a worker needs to run one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// [`CONTRACT_VERSION`].
    pub v: u32,
    /// DynamoDB results table.
    pub table: String,
    /// DetectLabels options.
    pub options: LabelOptions,
    /// The images, inline or in a manifest.
    pub images: ImageSource,
}

/// A job spec or manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// Not JSON of the expected shape.
    #[error("job spec is not valid: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by an incompatible version.
    #[error("job spec has contract version {found}; this build understands {CONTRACT_VERSION}")]
    Version {
        /// The version found.
        found: u32,
    },
    /// No chunks, or an empty chunk.
    #[error("job spec has no images")]
    Empty,
    /// The array index does not select a chunk.
    #[error("array index {index:?} does not select one of {chunks} chunks")]
    ChunkIndex {
        /// `AWS_BATCH_JOB_ARRAY_INDEX`, if set.
        index: Option<usize>,
        /// Number of chunks in the job.
        chunks: usize,
    },
    /// The manifest's content does not match the hash in the job spec.
    #[error("manifest s3://{bucket}/{key} changed after submission (sha256 mismatch)")]
    ManifestChanged {
        /// Manifest bucket.
        bucket: String,
        /// Manifest key.
        key: String,
    },
}

impl JobSpec {
    /// The job parameter's value: compact JSON.
    pub fn to_parameter(&self) -> String {
        serde_json::to_string(self).expect("a job spec always serialises")
    }

    /// Parses and checks a job parameter.
    pub fn from_parameter(raw: &str) -> Result<Self, ContractError> {
        let spec: JobSpec = serde_json::from_str(raw)?;
        if spec.v != CONTRACT_VERSION {
            return Err(ContractError::Version { found: spec.v });
        }
        if let ImageSource::Inline(chunks) = &spec.images {
            check_chunks(chunks)?;
        }
        Ok(spec)
    }

    /// Number of chunks: 1 for a plain job, the array size otherwise.
    pub fn chunk_count(&self) -> usize {
        match &self.images {
            ImageSource::Inline(chunks) => chunks.len(),
            ImageSource::Manifest(m) => m.chunks as usize,
        }
    }
}

impl Manifest {
    /// Serialised body and its hex SHA-256.
    pub fn to_body(&self) -> (Vec<u8>, String) {
        let body = serde_json::to_vec(self).expect("a manifest always serialises");
        let sha = hex::encode(Sha256::digest(&body));
        (body, sha)
    }

    /// Parses a manifest body, checking it against the hash the job carries.
    pub fn from_body(body: &[u8], expected: &ManifestRef) -> Result<Self, ContractError> {
        if hex::encode(Sha256::digest(body)) != expected.sha256 {
            return Err(ContractError::ManifestChanged {
                bucket: expected.bucket.clone(),
                key: expected.key.clone(),
            });
        }
        let manifest: Manifest = serde_json::from_slice(body)?;
        if manifest.v != CONTRACT_VERSION {
            return Err(ContractError::Version { found: manifest.v });
        }
        check_chunks(&manifest.chunks)?;
        Ok(manifest)
    }
}

fn check_chunks(chunks: &[Vec<ImageRef>]) -> Result<(), ContractError> {
    if chunks.is_empty() || chunks.iter().any(Vec::is_empty) {
        return Err(ContractError::Empty);
    }
    Ok(())
}

/// Picks the chunk a job (or array child) works on.
///
/// A plain job (`array_index` unset) must hold exactly one chunk; an array
/// child takes the chunk at its index.
pub fn select_chunk(
    chunks: &[Vec<ImageRef>],
    array_index: Option<usize>,
) -> Result<&[ImageRef], ContractError> {
    let selected = match array_index {
        None if chunks.len() == 1 => chunks.first(),
        None => None,
        Some(i) => chunks.get(i),
    };
    selected
        .map(Vec::as_slice)
        .ok_or(ContractError::ChunkIndex {
            index: array_index,
            chunks: chunks.len(),
        })
}

/// Splits images into chunks of at most `per_chunk`, in order.
pub fn chunk_images(images: Vec<ImageRef>, per_chunk: usize) -> Vec<Vec<ImageRef>> {
    let per_chunk = per_chunk.max(1);
    let mut chunks = Vec::with_capacity(images.len().div_ceil(per_chunk));
    let mut it = images.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per_chunk).collect());
    }
    chunks
}

/// A job ready for SubmitJob, and the manifest to write first (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedJob {
    /// Deterministic Batch job name.
    pub name: String,
    /// The spec for the job parameter.
    pub spec: JobSpec,
    /// `Some(n)` for an array job of n children.
    pub array_size: Option<usize>,
    /// Manifest object to write before submitting, as (bucket, key, body).
    pub manifest: Option<(String, String, Vec<u8>)>,
    /// The chunks, wherever the spec keeps them.
    pub chunks: Vec<Vec<ImageRef>>,
}

/// Where manifests are written when a spec is too large to inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLocation {
    /// Bucket for manifests; `None` uses the bucket of the job's first image.
    pub bucket: Option<String>,
    /// Key prefix, e.g. `labeler-manifests/`.
    pub prefix: String,
}

/// Plans one job for `chunks`: inline when it fits, a manifest otherwise.
///
/// `chunks` must be non-empty with non-empty chunks and at most
/// [`MAX_ARRAY_SIZE`] of them.
pub fn plan_job(
    table: &str,
    options: LabelOptions,
    chunks: Vec<Vec<ImageRef>>,
    manifests: &ManifestLocation,
) -> Result<PlannedJob, ContractError> {
    check_chunks(&chunks)?;
    if chunks.len() > MAX_ARRAY_SIZE {
        return Err(ContractError::ChunkIndex {
            index: Some(MAX_ARRAY_SIZE),
            chunks: chunks.len(),
        });
    }
    let name = job_name(&chunks);
    let array_size = (chunks.len() > 1).then_some(chunks.len());
    let inline = JobSpec {
        v: CONTRACT_VERSION,
        table: table.to_owned(),
        options,
        images: ImageSource::Inline(chunks.clone()),
    };
    if sent_bytes(&inline) <= INLINE_JOB_MAX_BYTES {
        return Ok(PlannedJob {
            name,
            spec: inline,
            array_size,
            manifest: None,
            chunks,
        });
    }
    let images = chunks.iter().map(Vec::len).sum::<usize>() as u32;
    let chunk_count = chunks.len() as u32;
    let bucket = manifests
        .bucket
        .clone()
        .unwrap_or_else(|| chunks[0][0].bucket.clone());
    let key = format!("{}{name}.json", manifests.prefix);
    let (body, sha256) = Manifest {
        v: CONTRACT_VERSION,
        chunks: chunks.clone(),
    }
    .to_body();
    Ok(PlannedJob {
        spec: JobSpec {
            v: CONTRACT_VERSION,
            table: table.to_owned(),
            options,
            images: ImageSource::Manifest(ManifestRef {
                bucket: bucket.clone(),
                key: key.clone(),
                sha256,
                chunks: chunk_count,
                images,
            }),
        },
        name,
        array_size,
        manifest: Some((bucket, key, body)),
        chunks,
    })
}

/// Bytes the spec's parameter takes in the SubmitJob request body: a JSON
/// string, so every quote, backslash and control character in keys counts
/// as it is escaped, not as it is.
pub fn sent_bytes(spec: &JobSpec) -> usize {
    serde_json::to_string(&spec.to_parameter())
        .expect("a string serialises")
        .len()
}

/// Deterministic, Batch-valid job name traceable to its images.
///
/// `label-<first key's file name>-<image count>-<hash of every image>`: the
/// same images always give the same name, and the name is at most 128
/// characters of `[A-Za-z0-9_-]`.
pub fn job_name(chunks: &[Vec<ImageRef>]) -> String {
    let mut hasher = Sha256::new();
    let mut count = 0usize;
    for image in chunks.iter().flatten() {
        count += 1;
        for part in [
            image.bucket.as_str(),
            image.key.as_str(),
            image.revision.as_str(),
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    let digest = hex::encode(hasher.finalize());
    let first = chunks
        .first()
        .and_then(|c| c.first())
        .map(|i| i.key.rsplit('/').next().unwrap_or(&i.key))
        .unwrap_or("");
    let slug: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let slug = slug.trim_matches('_');
    let slug = if slug.is_empty() { "image" } else { slug };
    format!("label-{slug}-{count}-{}", &digest[..16])
}

/// True when `name` is a valid Batch job name.
pub fn is_valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_JOB_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn image(key: &str, seq: &str) -> ImageRef {
        ImageRef {
            bucket: "photos".into(),
            key: key.into(),
            revision: Revision::from_sequencer(seq).unwrap(),
            version_id: None,
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            size: Some(1234),
        }
    }

    fn location() -> ManifestLocation {
        ManifestLocation {
            bucket: None,
            prefix: "labeler-manifests/".into(),
        }
    }

    #[test]
    fn job_spec_round_trips_through_its_parameter() {
        let planned = plan_job(
            "labels",
            LabelOptions::default(),
            vec![vec![image("a b.jpg", "01"), image("фото/c+d.png", "02")]],
            &location(),
        )
        .unwrap();
        let raw = planned.spec.to_parameter();
        assert_eq!(JobSpec::from_parameter(&raw).unwrap(), planned.spec);
        assert!(planned.manifest.is_none());
        assert_eq!(planned.array_size, None);
    }

    #[test]
    fn serialised_form_is_stable() {
        let spec = JobSpec {
            v: 1,
            table: "labels".into(),
            options: LabelOptions {
                max_labels: 10,
                min_confidence: 75.5,
            },
            images: ImageSource::Inline(vec![vec![image("k.jpg", "00AB")]]),
        };
        assert_eq!(
            spec.to_parameter(),
            r#"{"v":1,"table":"labels","options":{"max_labels":10,"min_confidence":75.5},"images":{"inline":[[{"bucket":"photos","key":"k.jpg","revision":"2.00AB000000000000000000000000000000000000","etag":"d41d8cd98f00b204e9800998ecf8427e","size":1234}]]}}"#
        );
    }

    #[test]
    fn rejects_specs_of_another_version_or_without_images() {
        let raw = r#"{"v":2,"table":"t","options":{"max_labels":1,"min_confidence":1.0},"images":{"inline":[[]]}}"#;
        assert!(matches!(
            JobSpec::from_parameter(raw),
            Err(ContractError::Version { found: 2 })
        ));
        let raw = r#"{"v":1,"table":"t","options":{"max_labels":1,"min_confidence":1.0},"images":{"inline":[[]]}}"#;
        assert!(matches!(
            JobSpec::from_parameter(raw),
            Err(ContractError::Empty)
        ));
    }

    #[test]
    fn the_inline_limit_counts_keys_as_they_are_escaped_in_the_request() {
        // Quotes double again in the request body: in the spec, these 17 keys fit the
        // inline limit; escaped, they do not.
        let quotes = "\"".repeat(500);
        let images: Vec<_> = (0..17)
            .map(|i| image(&format!("{quotes}{i}.jpg"), &format!("{i:04X}")))
            .collect();
        let inline = JobSpec {
            v: CONTRACT_VERSION,
            table: "labels".into(),
            options: LabelOptions::default(),
            images: ImageSource::Inline(vec![images.clone()]),
        };
        assert!(inline.to_parameter().len() <= INLINE_JOB_MAX_BYTES);
        assert!(sent_bytes(&inline) > INLINE_JOB_MAX_BYTES);

        let planned =
            plan_job("labels", LabelOptions::default(), vec![images], &location()).unwrap();

        assert!(matches!(planned.spec.images, ImageSource::Manifest(_)));
        assert!(sent_bytes(&planned.spec) <= INLINE_JOB_MAX_BYTES);
    }

    #[test]
    fn large_jobs_move_into_a_manifest_and_stay_under_the_payload_limit() {
        let long = "k".repeat(1000);
        let images: Vec<_> = (0..500)
            .map(|i| image(&format!("{long}{i}.jpg"), &format!("{i:04X}")))
            .collect();
        let chunks = chunk_images(images.clone(), 100);
        let planned = plan_job("labels", LabelOptions::default(), chunks, &location()).unwrap();
        assert!(planned.spec.to_parameter().len() <= INLINE_JOB_MAX_BYTES);
        assert_eq!(planned.array_size, Some(5));
        let (bucket, key, body) = planned.manifest.clone().unwrap();
        assert_eq!(bucket, "photos");
        assert_eq!(key, format!("labeler-manifests/{}.json", planned.name));
        let ImageSource::Manifest(mref) = &planned.spec.images else {
            panic!("expected a manifest")
        };
        assert_eq!((mref.chunks, mref.images), (5, 500));
        let manifest = Manifest::from_body(&body, mref).unwrap();
        assert_eq!(
            select_chunk(&manifest.chunks, Some(4)).unwrap(),
            &images[400..]
        );
    }

    #[test]
    fn a_changed_manifest_is_refused() {
        let (body, sha256) = Manifest {
            v: 1,
            chunks: vec![vec![image("a.jpg", "01")]],
        }
        .to_body();
        let mref = ManifestRef {
            bucket: "b".into(),
            key: "m.json".into(),
            sha256,
            chunks: 1,
            images: 1,
        };
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert!(Manifest::from_body(&body, &mref).is_ok());
        assert!(matches!(
            Manifest::from_body(&tampered, &mref),
            Err(ContractError::ManifestChanged { .. })
        ));
    }

    #[test]
    fn plain_jobs_hold_one_chunk_and_array_children_pick_theirs() {
        let one = vec![vec![image("a.jpg", "01")]];
        assert_eq!(select_chunk(&one, None).unwrap().len(), 1);
        let two = chunk_images(vec![image("a.jpg", "01"), image("b.jpg", "02")], 1);
        assert_eq!(select_chunk(&two, Some(1)).unwrap()[0].key, "b.jpg");
        assert!(select_chunk(&two, None).is_err());
        assert!(select_chunk(&two, Some(2)).is_err());
    }

    #[test]
    fn chunks_keep_order_and_respect_the_size() {
        let images: Vec<_> = (0..7)
            .map(|i| image(&format!("{i}.jpg"), &format!("{i:02X}")))
            .collect();
        let chunks = chunk_images(images.clone(), 3);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        assert_eq!(chunks.concat(), images);
    }

    #[test]
    fn job_names_are_deterministic_and_depend_on_every_image() {
        let a = vec![vec![image("cats/tabby cat.jpg", "01")]];
        let b = vec![vec![image("cats/tabby cat.jpg", "02")]];
        assert_eq!(job_name(&a), job_name(&a.clone()));
        assert_ne!(job_name(&a), job_name(&b));
        assert!(job_name(&a).starts_with("label-tabby_cat_jpg-1-"));
    }

    proptest! {
        #[test]
        fn job_names_are_always_valid_for_batch(key in ".{1,300}", n in 1usize..5) {
            let chunks = vec![(0..n).map(|i| image(&format!("{key}{i}"), "0A")).collect()];
            let name = job_name(&chunks);
            prop_assert!(is_valid_job_name(&name), "{}", name);
        }
    }
}
