//! Why a job or an image could not be finished, and which faults are
//! permanent.
//!
//! Two kinds of trouble reach the worker:
//! * **permanent image faults**: Rekognition refuses the image for good.
//!   They are not errors of the run: the image gets a FAILED record whose
//!   reason [`permanent_reason`] words for people, and is never retried;
//! * **errors** ([`WorkerError`]): the job cannot be run at all, or an AWS
//!   call kept failing after the SDK's retries. [`WorkerError::exit_code`]
//!   says whether Batch should try again.

use crate::exit::ExitCode;
use aws_sdk_rekognition::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_rekognition::operation::detect_labels::DetectLabelsError;
use labeler_core::job::ContractError;
use labeler_core::store::StoreError;

/// Everything that can stop the worker from finishing a job or an image.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The job spec or its manifest is malformed, of another contract
    /// version, changed since submission, or has no chunk at this index.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The job names a results table this worker is not deployed for.
    #[error("job writes to table {found:?} but this worker is deployed for {expected:?}")]
    WrongTable {
        /// `--expect-table`.
        expected: String,
        /// The spec's table.
        found: String,
    },
    /// The manifest object does not exist or may not be read.
    #[error("manifest s3://{bucket}/{key} cannot be read: {message}")]
    ManifestMissing {
        /// Manifest bucket.
        bucket: String,
        /// Manifest key.
        key: String,
        /// The service's answer.
        message: String,
    },
    /// Reading the manifest failed for a reason that may pass.
    #[error("reading manifest s3://{bucket}/{key} failed: {message}")]
    ManifestRead {
        /// Manifest bucket.
        bucket: String,
        /// Manifest key.
        key: String,
        /// The last error.
        message: String,
    },
    /// DetectLabels kept failing with transient faults (throttling, 5xx,
    /// timeouts) after every in-process retry.
    #[error("DetectLabels on s3://{bucket}/{key} failed: {message}")]
    DetectLabels {
        /// Image bucket.
        bucket: String,
        /// Image key.
        key: String,
        /// The last error.
        message: String,
    },
    /// Reading the image from S3 (to see its format, or to convert it)
    /// kept failing with transient faults after every in-process retry.
    #[error("reading s3://{bucket}/{key} failed: {message}")]
    ImageRead {
        /// Image bucket.
        bucket: String,
        /// Image key.
        key: String,
        /// The last error.
        message: String,
    },
    /// A DynamoDB call kept failing after every in-process retry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job definition template could not be rendered or parsed.
    #[error("job definition template: {0}")]
    JobDefinition(String),
}

impl WorkerError {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            WorkerError::Contract(_)
            | WorkerError::WrongTable { .. }
            | WorkerError::ManifestMissing { .. }
            | WorkerError::JobDefinition(_) => ExitCode::JobUnusable,
            WorkerError::ManifestRead { .. }
            | WorkerError::DetectLabels { .. }
            | WorkerError::ImageRead { .. }
            | WorkerError::Store(_) => ExitCode::Retryable,
        }
    }
}

/// An error with all of its sources, `outer: inner: innermost`, for logs.
pub fn full_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// What kind of reason an image was recorded FAILED for: a small, fixed
/// set, so it can be a metric dimension (`ReasonClass`) while the reason
/// itself stays in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReasonClass {
    /// The bytes are no image (text, a lying suffix, an empty object), or
    /// Rekognition says it is no valid JPEG or PNG.
    NotAnImage,
    /// Too large to download, decode or send.
    TooLarge,
    /// Gone, truncated or corrupt: the object could not be read or decoded.
    Unreadable,
    /// Rekognition refused the request for this image (too small, …).
    RekognitionRefused,
    /// The worker may not call Rekognition on this image.
    AccessDenied,
    /// Anything else (a format this build cannot decode, an encoder error).
    Other,
}

impl ReasonClass {
    /// Every class, in the order dashboards list them.
    pub const ALL: [ReasonClass; 6] = [
        ReasonClass::NotAnImage,
        ReasonClass::TooLarge,
        ReasonClass::Unreadable,
        ReasonClass::RekognitionRefused,
        ReasonClass::AccessDenied,
        ReasonClass::Other,
    ];

    /// The class as the `ReasonClass` metric dimension spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonClass::NotAnImage => "not_an_image",
            ReasonClass::TooLarge => "too_large",
            ReasonClass::Unreadable => "unreadable",
            ReasonClass::RekognitionRefused => "rekognition_refused",
            ReasonClass::AccessDenied => "access_denied",
            ReasonClass::Other => "other",
        }
    }
}

/// Why an image cannot be labeled, for good: the FAILED reason in plain
/// words and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason recorded on the image.
    pub reason: String,
    /// Its class, for metrics.
    pub class: ReasonClass,
}

impl Refusal {
    /// A refusal of `class` with `reason`.
    pub fn new(class: ReasonClass, reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            class,
        }
    }
}

/// How a failed DetectLabels call is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Retrying cannot help: record FAILED with this reason.
    Permanent(Refusal),
    /// The account's DetectLabels quota is exceeded: slow down and call
    /// again ([`crate::rate`]); never a reason to fail the image.
    Throttled(String),
    /// Might pass later: leave the image QUEUED and ask Batch to retry.
    Transient(String),
}

/// Rekognition's answers that mean "over the account's rate" (the
/// `ThrottlingException` of 5xx and the `ProvisionedThroughputExceeded`
/// and `LimitExceeded` of 4xx, as the SDK's own throttling list has them).
pub const THROTTLING_CODES: [&str; 4] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "TooManyRequestsException",
];

/// Whether a DetectLabels error code means throttling.
pub fn is_throttling(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Stops the SDK from retrying throttled DetectLabels calls itself, so that
/// each one reaches the worker's rate limiter at once ([`crate::rate`]): an
/// SDK retry would call again at the old pace, unseen by the limiter.
/// Other transient faults (5xx, timeouts) are still retried by the SDK.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlingIsBackPressure;

impl aws_sdk_rekognition::config::retry::ClassifyRetry for ThrottlingIsBackPressure {
    fn classify_retry(
        &self,
        ctx: &aws_sdk_rekognition::config::interceptors::InterceptorContext,
    ) -> aws_sdk_rekognition::config::retry::RetryAction {
        use aws_sdk_rekognition::config::retry::RetryAction;
        let throttled = matches!(ctx.output_or_error(), Some(Err(e))
            if e.as_operation_error()
                .and_then(|e| e.downcast_ref::<DetectLabelsError>())
                .is_some_and(|e| is_throttling(detect_labels_code(e))));
        if throttled {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "ThrottlingIsBackPressure"
    }
}

/// The class of a Rekognition error that retrying cannot cure.
pub fn permanent_class(code: &str) -> Option<ReasonClass> {
    Some(match code {
        "InvalidImageFormatException" => ReasonClass::NotAnImage,
        "ImageTooLargeException" => ReasonClass::TooLarge,
        "InvalidS3ObjectException" => ReasonClass::Unreadable,
        "InvalidParameterException" => ReasonClass::RekognitionRefused,
        "AccessDeniedException" => ReasonClass::AccessDenied,
        _ => return None,
    })
}

/// The FAILED reason for a Rekognition error that retrying cannot cure, or
/// `None` when the error may pass (throttling, 5xx, unknown codes).
pub fn permanent_reason(code: &str, message: Option<&str>) -> Option<String> {
    let what = match code {
        "InvalidImageFormatException" => {
            "Rekognition cannot read this image: it is not a valid JPEG or PNG"
        }
        "ImageTooLargeException" => {
            "Rekognition cannot label this image: it is larger than Rekognition accepts \
             (15 MB for an image in S3)"
        }
        "InvalidS3ObjectException" => {
            "Rekognition cannot read this object from S3: it no longer exists, is in \
             another region, or Rekognition may not read it"
        }
        "InvalidParameterException" => {
            "Rekognition refused the request for this image (for example, it is smaller \
             than 80 pixels on a side)"
        }
        "AccessDeniedException" => {
            "the worker is not allowed to call Rekognition DetectLabels on this image"
        }
        _ => return None,
    };
    Some(match message.filter(|m| !m.trim().is_empty()) {
        Some(m) => format!("{what} ({code}: {m})"),
        None => format!("{what} ({code})"),
    })
}

/// The error code of a DetectLabels error: the service's, or the modeled
/// variant's name when the error carries no metadata.
fn detect_labels_code(err: &DetectLabelsError) -> &str {
    err.code().unwrap_or(match err {
        DetectLabelsError::AccessDeniedException(_) => "AccessDeniedException",
        DetectLabelsError::ImageTooLargeException(_) => "ImageTooLargeException",
        DetectLabelsError::InternalServerError(_) => "InternalServerError",
        DetectLabelsError::InvalidImageFormatException(_) => "InvalidImageFormatException",
        DetectLabelsError::InvalidParameterException(_) => "InvalidParameterException",
        DetectLabelsError::InvalidS3ObjectException(_) => "InvalidS3ObjectException",
        DetectLabelsError::ProvisionedThroughputExceededException(_) => {
            "ProvisionedThroughputExceededException"
        }
        DetectLabelsError::ThrottlingException(_) => "ThrottlingException",
        _ => "service error",
    })
}

/// Classifies a failed DetectLabels call.
pub fn classify<R>(error: &SdkError<DetectLabelsError, R>) -> Fault
where
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = detect_labels_code(err);
            let text = || format!("{code}: {}", err.message().unwrap_or("no message"));
            match (permanent_reason(code, err.message()), permanent_class(code)) {
                (Some(reason), Some(class)) => Fault::Permanent(Refusal { reason, class }),
                _ if is_throttling(code) => Fault::Throttled(text()),
                _ => Fault::Transient(text()),
            }
        }
        other => Fault::Transient(DisplayErrorContext(other).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_rekognition_errors_get_a_plain_words_reason() {
        assert_eq!(
            permanent_reason("InvalidImageFormatException", None).as_deref(),
            Some("Rekognition cannot read this image: it is not a valid JPEG or PNG (InvalidImageFormatException)")
        );
        let reason =
            permanent_reason("InvalidParameterException", Some("Image too small")).unwrap();
        assert!(
            reason.ends_with("(InvalidParameterException: Image too small)"),
            "{reason}"
        );
        for code in [
            "ImageTooLargeException",
            "InvalidS3ObjectException",
            "AccessDeniedException",
        ] {
            assert!(permanent_reason(code, None).unwrap().contains(code));
        }
        for code in [
            "InvalidImageFormatException",
            "ImageTooLargeException",
            "InvalidS3ObjectException",
            "InvalidParameterException",
            "AccessDeniedException",
        ] {
            assert!(
                permanent_class(code).is_some(),
                "{code} has a reason but no class"
            );
        }
    }

    #[test]
    fn throttling_server_errors_and_unknown_codes_are_not_permanent() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "InternalServerError",
            "SomethingNew",
        ] {
            assert_eq!(permanent_reason(code, Some("x")), None, "{code}");
        }
    }

    #[test]
    fn modeled_errors_without_metadata_are_classified_by_their_variant() {
        use aws_sdk_rekognition::types::error::{InvalidImageFormatException, ThrottlingException};
        let invalid = SdkError::service_error(
            DetectLabelsError::InvalidImageFormatException(
                InvalidImageFormatException::builder().build(),
            ),
            (),
        );
        let throttled = SdkError::service_error(
            DetectLabelsError::ThrottlingException(ThrottlingException::builder().build()),
            (),
        );
        let timeout: SdkError<DetectLabelsError, ()> = SdkError::timeout_error("attempt timed out");

        assert!(
            matches!(classify(&invalid), Fault::Permanent(r) if r.reason.contains("not a valid JPEG or PNG") && r.class == ReasonClass::NotAnImage)
        );
        assert!(
            matches!(classify(&throttled), Fault::Throttled(m) if m.starts_with("ThrottlingException"))
        );
        assert!(matches!(classify(&timeout), Fault::Transient(_)));
    }

    #[test]
    fn logged_errors_carry_their_whole_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let store = StoreError {
            operation: "GetItem",
            pk: "s3://b/k".into(),
            source: Box::new(io),
            transient: true,
        };
        let error = WorkerError::from(store);

        assert_eq!(
            full_chain(&error),
            "DynamoDB GetItem on s3://b/k failed: connection refused"
        );
    }

    #[test]
    fn only_job_level_problems_are_unusable() {
        let unusable = WorkerError::WrongTable {
            expected: "a".into(),
            found: "b".into(),
        };
        let transient = WorkerError::DetectLabels {
            bucket: "b".into(),
            key: "k".into(),
            message: "ThrottlingException".into(),
        };
        assert_eq!(unusable.exit_code(), ExitCode::JobUnusable);
        assert_eq!(transient.exit_code(), ExitCode::Retryable);
        assert_eq!(
            WorkerError::from(ContractError::Empty).exit_code(),
            ExitCode::JobUnusable
        );
    }
}
