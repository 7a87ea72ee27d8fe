//! The AWS clients the dispatcher calls, and how their errors read in logs
//! and records.

/// The AWS clients the dispatcher calls, built once per cold start.
#[derive(Clone, Debug)]
pub struct Clients {
    /// AWS Batch.
    pub batch: aws_sdk_batch::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 (manifests).
    pub s3: aws_sdk_s3::Client,
}

/// An SDK error with its service code and message, for logs and records.
pub(crate) fn describe<E, R>(e: &aws_sdk_batch::error::SdkError<E, R>) -> String
where
    E: aws_sdk_batch::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        aws_sdk_batch::error::SdkError::ServiceError(se) => {
            let err = se.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("service error"),
                err.message().unwrap_or("no message")
            )
        }
        other => aws_sdk_batch::error::DisplayErrorContext(other).to_string(),
    }
}
