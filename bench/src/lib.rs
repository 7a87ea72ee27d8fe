//! Benchmarks of image-labeler against loopback stand-ins of the AWS APIs
//! (`make bench`): the dispatcher in process, the worker binary as a child
//! process, the dispatcher's Lambda package and start-up, and the cost
//! model built on the measured request counts.
//!
//! * [`standin`]: one HTTP server on 127.0.0.1 that speaks just enough
//!   Batch, DynamoDB, Rekognition and S3 for the real SDK clients, with
//!   fixed latency, throttling caps and call accounting;
//! * [`scenario_dispatcher`], [`scenario_worker`], [`scenario_fleet`],
//!   [`scenario_lambda`], [`scenario_gallery`], [`scenario_convert`],
//!   [`scenario_local`]: the measurements;
//! * [`cost`]: the cost model of `docs/cost.md`;
//! * [`report`]: the table printed and written to `docs/benchmarks.md` and
//!   `target/bench/results.json`, and [`plot`], the fleet figure.

pub mod clients;
pub mod cost;
pub mod events;
pub mod plot;
pub mod process;
pub mod report;
pub mod scenario_convert;
pub mod scenario_dispatcher;
pub mod scenario_fleet;
pub mod scenario_gallery;
pub mod scenario_lambda;
pub mod scenario_local;
pub mod scenario_worker;
pub mod standin;
