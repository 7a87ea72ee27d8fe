//! Shared core of image-labeler: the contract between the dispatcher and the
//! worker, the results schema in DynamoDB, and the conditional writes that
//! keep that table correct under at-least-once, out-of-order delivery.
//!
//! * [`key`]: exact decoding of object keys from S3 event notifications.
//! * [`revision`]: ordering uploads of one key by S3's `sequencer`.
//! * [`job`]: the [`job::JobSpec`] a Batch job carries, chunking, manifests,
//!   deterministic job names.
//! * [`schema`]: table layout, record attributes, label index, size caps.
//! * [`store`]: conditional writes implementing "one labeling per upload" and
//!   "newest upload wins".
//! * [`table`]: the table's key schema and index, for tools that create it.

pub mod job;
pub mod key;
pub mod labeling;
pub mod revision;
pub mod schema;
pub mod store;
pub mod table;

pub use job::{ImageRef, JobSpec, LabelOptions};
pub use revision::Revision;
pub use schema::Status;
