//! The dispatcher's settings, read once from the environment at cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `JOB_QUEUE` | required | Batch job queue (name or ARN) |
//! | `JOB_DEFINITION` | required | Batch job definition (name, name:revision or ARN) |
//! | `TABLE_NAME` | required | DynamoDB results table |
//! | `IMAGE_SUFFIXES` | `.jpg,.jpeg,.png,.webp,.gif,.tif,.tiff,.bmp,.heic,.heif,.avif` | suffixes labeled, case-insensitive; others are SKIPPED. The worker decides from the bytes, not the suffix: JPEG/PNG within Rekognition's limits go to it as they are, the rest are converted ([`DEFAULT_SUFFIXES`]) |
//! | `INCLUDE_PREFIXES` | (all) | comma-separated key prefixes to accept; others are ignored |
//! | `EXCLUDE_PREFIXES` | (none) | comma-separated key prefixes to ignore |
//! | `MAX_OBJECT_BYTES` | `104857600` | larger objects are SKIPPED (the worker converts objects up to this size; Rekognition reads at most 15 MB itself) |
//! | `DELETE_ON_REMOVE` | `true` | `ObjectRemoved` and `LifecycleExpiration` replace the record by a tombstone and delete its label entries |
//! | `IMAGES_PER_JOB` | `100` | images per job, or per array child (1–10000) |
//! | `MAX_LABELS` | `50` | DetectLabels `MaxLabels` passed to the worker |
//! | `MIN_CONFIDENCE` | `70` | DetectLabels `MinConfidence` passed to the worker (0–100) |
//! | `MANIFEST_BUCKET` | the images' bucket | where large jobs' manifests are written |
//! | `MANIFEST_PREFIX` | `labeler-manifests/` | key prefix of manifests; always ignored as input |
//! | `SUBMIT_CONCURRENCY` | `4` | SubmitJob calls in flight per invocation |
//! | `WRITE_CONCURRENCY` | `16` | DynamoDB writes in flight per invocation |
//! | `MAX_ATTEMPTS` | `8` | attempts per AWS call (throttling and 5xx are retried with jittered backoff) |
//! | `CLAIM_LEASE_SECONDS` | `900` | after this, a claim that produced no job can be retaken (keep it above the function timeout) |
//! | `TOMBSTONE_TTL_DAYS` | `30` | how long a delete's tombstone outlives it (late events older than this could recreate a record) |
//! | `RECONCILE_AFTER_SECONDS` | `900` | the reconciler looks at records QUEUED for longer than this |
//! | `RECONCILE_GIVE_UP_SECONDS` | `86400` | an upload still not labeled this long after its first dispatch is recorded FAILED; until then the reconciler dispatches it again with a doubling delay |
//! | `RECONCILE_LIMIT` | `1000` | most QUEUED records one reconciler pass examines |
//!
//! AWS endpoints, region and credentials come from the SDK's standard
//! environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, …).

use labeler_core::job::{LabelOptions, ManifestLocation, MAX_ARRAY_SIZE};
use std::str::FromStr;

/// Suffixes labeled by default: what Rekognition reads (JPEG, PNG) and what
/// the worker converts for it (WebP, GIF, TIFF, BMP, and HEIC/HEIF and AVIF
/// with libheif, which the worker image carries).
pub const DEFAULT_SUFFIXES: &str = ".jpg,.jpeg,.png,.webp,.gif,.tif,.tiff,.bmp,.heic,.heif,.avif";

/// Largest object dispatched by default: the worker downloads objects it
/// must convert (over 15 MB, or not JPEG/PNG) up to this size.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 100 * 1024 * 1024;

/// A setting that is missing or invalid; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set (or empty).
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("environment variable {name}={value:?} is invalid: {why}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
}

/// Everything the dispatcher is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Batch job queue.
    pub job_queue: String,
    /// Batch job definition.
    pub job_definition: String,
    /// DynamoDB results table.
    pub table: String,
    /// Lower-case suffixes that are labeled.
    pub suffixes: Vec<String>,
    /// Accepted key prefixes; empty accepts all.
    pub include_prefixes: Vec<String>,
    /// Ignored key prefixes (always includes the manifest prefix).
    pub exclude_prefixes: Vec<String>,
    /// Largest object labeled, in bytes.
    pub max_object_bytes: u64,
    /// Whether `ObjectRemoved` deletes records.
    pub delete_on_remove: bool,
    /// Images per job or array child.
    pub images_per_job: usize,
    /// DetectLabels options for the worker.
    pub label_options: LabelOptions,
    /// Where manifests go.
    pub manifests: ManifestLocation,
    /// SubmitJob calls in flight.
    pub submit_concurrency: usize,
    /// DynamoDB writes in flight.
    pub write_concurrency: usize,
    /// Attempts per AWS call.
    pub max_attempts: u32,
    /// Claim lease, in seconds.
    pub claim_lease_secs: u64,
    /// Tombstone lifetime, in seconds.
    pub tombstone_ttl_secs: u64,
    /// The reconciler's settings.
    pub reconcile: ReconcileSettings,
}

/// How the reconciler works through old QUEUED records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Records QUEUED for longer than this (seconds) are examined.
    pub after_secs: u64,
    /// Seconds after an upload's first dispatch when it is recorded FAILED.
    pub give_up_secs: u64,
    /// Most records examined per pass.
    pub limit: usize,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            after_secs: 900,
            give_up_secs: 86_400,
            limit: 1000,
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let list = |name: &str, default: &str| -> Vec<String> {
            get(name)
                .unwrap_or_else(|| default.to_owned())
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };

        let suffixes: Vec<String> = list("IMAGE_SUFFIXES", DEFAULT_SUFFIXES)
            .into_iter()
            .map(|s| s.to_lowercase())
            .collect();
        if suffixes.is_empty() {
            return Err(invalid(
                "IMAGE_SUFFIXES",
                "",
                "at least one suffix is needed",
            ));
        }
        let manifest_prefix = get("MANIFEST_PREFIX").unwrap_or_else(|| "labeler-manifests/".into());
        let mut exclude_prefixes = list("EXCLUDE_PREFIXES", "");
        exclude_prefixes.push(manifest_prefix.clone());

        let images_per_job: usize = parse(&get, "IMAGES_PER_JOB", 100)?;
        if !(1..=MAX_ARRAY_SIZE).contains(&images_per_job) {
            return Err(invalid(
                "IMAGES_PER_JOB",
                &images_per_job.to_string(),
                "must be between 1 and 10000",
            ));
        }
        let min_confidence: f32 = parse(&get, "MIN_CONFIDENCE", 70.0)?;
        if !(0.0..=100.0).contains(&min_confidence) {
            return Err(invalid(
                "MIN_CONFIDENCE",
                &min_confidence.to_string(),
                "must be between 0 and 100",
            ));
        }
        let max_labels: u32 = parse(&get, "MAX_LABELS", 50)?;
        if !(1..=1000).contains(&max_labels) {
            return Err(invalid(
                "MAX_LABELS",
                &max_labels.to_string(),
                "must be between 1 and 1000",
            ));
        }
        let positive = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
            let v: usize = parse(&get, name, default)?;
            if v == 0 {
                return Err(invalid(name, "0", "must be at least 1"));
            }
            Ok(v)
        };

        Ok(Self {
            job_queue: required("JOB_QUEUE")?,
            job_definition: required("JOB_DEFINITION")?,
            table: required("TABLE_NAME")?,
            suffixes,
            include_prefixes: list("INCLUDE_PREFIXES", ""),
            exclude_prefixes,
            max_object_bytes: parse(&get, "MAX_OBJECT_BYTES", DEFAULT_MAX_OBJECT_BYTES)?,
            delete_on_remove: parse_bool(&get, "DELETE_ON_REMOVE", true)?,
            images_per_job,
            label_options: LabelOptions {
                max_labels,
                min_confidence,
            },
            manifests: ManifestLocation {
                bucket: get("MANIFEST_BUCKET"),
                prefix: manifest_prefix,
            },
            submit_concurrency: positive("SUBMIT_CONCURRENCY", 4)?,
            write_concurrency: positive("WRITE_CONCURRENCY", 16)?,
            max_attempts: positive("MAX_ATTEMPTS", 8)? as u32,
            claim_lease_secs: positive("CLAIM_LEASE_SECONDS", 900)? as u64,
            tombstone_ttl_secs: positive("TOMBSTONE_TTL_DAYS", 30)? as u64 * 86_400,
            reconcile: ReconcileSettings {
                after_secs: parse(&get, "RECONCILE_AFTER_SECONDS", 900)?,
                give_up_secs: positive("RECONCILE_GIVE_UP_SECONDS", 86_400)? as u64,
                limit: positive("RECONCILE_LIMIT", 1000)?,
            },
        })
    }
}

fn invalid(name: &'static str, value: &str, why: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        why: why.to_owned(),
    }
}

fn parse<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: T::Err| invalid(name, &raw, &e.to_string())),
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "no"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(invalid(name, &v, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const REQUIRED: [(&str, &str); 3] = [
        ("JOB_QUEUE", "q"),
        ("JOB_DEFINITION", "d"),
        ("TABLE_NAME", "t"),
    ];

    #[test]
    fn defaults_are_documented_values() {
        let c = config(&REQUIRED).unwrap();
        assert_eq!(
            c.suffixes,
            [
                ".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic",
                ".heif", ".avif"
            ]
        );
        assert_eq!(c.max_object_bytes, 100 * 1024 * 1024);
        assert_eq!(c.images_per_job, 100);
        assert!(c.delete_on_remove);
        assert_eq!(c.exclude_prefixes, ["labeler-manifests/"]);
        assert_eq!(c.label_options, LabelOptions::default());
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        for missing in ["JOB_QUEUE", "JOB_DEFINITION", "TABLE_NAME"] {
            let vars: Vec<_> = REQUIRED
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = config(&vars).unwrap_err();
            assert_eq!(err, ConfigError::Missing(missing));
            assert!(err.to_string().contains(missing));
        }
    }

    #[test]
    fn an_invalid_value_is_named_with_the_reason() {
        let mut vars = REQUIRED.to_vec();
        vars.push(("IMAGES_PER_JOB", "0"));
        let err = config(&vars).unwrap_err().to_string();
        assert!(
            err.contains("IMAGES_PER_JOB") && err.contains("between 1 and 10000"),
            "{err}"
        );

        let mut vars = REQUIRED.to_vec();
        vars.push(("DELETE_ON_REMOVE", "maybe"));
        assert!(config(&vars)
            .unwrap_err()
            .to_string()
            .contains("DELETE_ON_REMOVE"));

        let mut vars = REQUIRED.to_vec();
        vars.push(("MAX_OBJECT_BYTES", "lots"));
        assert!(config(&vars)
            .unwrap_err()
            .to_string()
            .contains("MAX_OBJECT_BYTES"));
    }

    /// A zero lease would let any redelivery take over a claim whose
    /// dispatcher is still submitting; a zero give-up would fail every
    /// image the reconciler looks at.
    #[test]
    fn a_zero_lease_or_give_up_time_is_refused_by_name() {
        for name in ["CLAIM_LEASE_SECONDS", "RECONCILE_GIVE_UP_SECONDS"] {
            let mut vars = REQUIRED.to_vec();
            vars.push((name, "0"));
            let err = config(&vars).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("at least 1"), "{err}");
        }
        let c = config(&REQUIRED).unwrap();
        assert_eq!(
            (c.claim_lease_secs, c.reconcile.give_up_secs),
            (900, 86_400)
        );
    }

    #[test]
    fn lists_are_trimmed_and_suffixes_lower_cased() {
        let mut vars = REQUIRED.to_vec();
        vars.push(("IMAGE_SUFFIXES", " .JPG , .png,"));
        vars.push(("INCLUDE_PREFIXES", "in/,uploads/"));
        let c = config(&vars).unwrap();
        assert_eq!(c.suffixes, [".jpg", ".png"]);
        assert_eq!(c.include_prefixes, ["in/", "uploads/"]);
    }
}
