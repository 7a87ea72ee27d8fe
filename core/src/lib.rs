//! Shared core of image-labeler: the contract between the dispatcher and the
//! worker, the results schema in DynamoDB, and the conditional writes that
//! keep that table correct under at-least-once, out-of-order delivery.
//!
//! * [`key`]: exact decoding of object keys from S3 event notifications.
//! * [`revision`]: ordering uploads of one key by S3's `sequencer`.
//! * [`job`]: the [`job::JobSpec`] a Batch job carries, chunking, manifests,
//!   deterministic job names.
//! * [`schema`]: table layout, record attributes, label index, size caps.
//! * [`rule`]: the one rule for "stored record vs incoming write": every
//!   condition expression beside its in-memory twin.
//! * [`db`]: primitives every writer shares (clock, errors, outcomes, reads).
//! * [`entries`]: label-index entries and their removal.
//! * `write` (crate-private): every conditional write as a value, built by
//!   one pure function per writer, and `Table::apply`, the one place that
//!   sends a write and reads the record when its condition fails.
//! * [`store`]: the dispatcher's conditional writes (claims, skips,
//!   failures, tombstones, re-dispatches): build, apply, clean up entries.
//! * [`labeling`]: the worker's conditional writes (take, LABELED, FAILED).
//! * [`reuse`]: content entries, so each distinct picture is labeled once.
//! * [`table`]: the table's key schema and indexes, for tools that create it.
//! * [`emf`]: CloudWatch metrics written as log lines (embedded metric
//!   format), and a check of lines against the format's specification.
//!
//! Layering, bottom up: `rule` (pure) → `db` → `entries` → `write` →
//! `store`, `labeling` → `reuse`; nothing imports upwards.

pub mod budget;
pub mod db;
pub mod emf;
pub mod entries;
pub mod job;
pub mod key;
pub mod labeling;
pub mod reuse;
pub mod revision;
pub mod rule;
pub mod schema;
pub mod store;
pub mod table;
mod write;

pub use job::{ImageRef, JobSpec, LabelOptions};
pub use revision::Revision;
pub use schema::Status;
