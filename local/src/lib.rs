//! The local stack of image-labeler: the whole pipeline on one machine,
//! with no AWS account and no Docker daemon.
//!
//! * [`moto`]: moto in server mode on loopback stands in for AWS.
//! * [`provision`]: the resources `infra/` defines, from the same
//!   single-source definitions (job definition template, table schema).
//! * [`lambda`]: the dispatcher deployed with `cargo lambda deploy` and
//!   served by `cargo lambda watch` (the real binary behind the Lambda
//!   Runtime API).
//! * [`pump`]: S3 notifications (moto → SQS) delivered to the dispatcher in
//!   batches, honouring `batchItemFailures`.
//! * [`executor`]: a local AWS Batch compute environment that runs the
//!   worker per job and array child, and reports failed jobs to the
//!   dispatcher as Batch "Job State Change" events.
//! * [`container`]: what it runs: the worker binary, or the worker image
//!   under podman (arm64 through qemu).
//! * [`stack`] composes them; [`demo`] is `make demo`.

pub mod container;
pub mod demo;
pub mod executor;
pub mod lambda;
pub mod moto;
pub mod provision;
pub mod pump;
pub mod stack;

/// An S3 client for moto (path-style addressing).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}
