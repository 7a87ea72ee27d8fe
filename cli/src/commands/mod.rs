//! One module per command.

pub mod backfill;
pub mod export;
pub mod find;
pub mod get;
pub mod reconcile;
pub mod retry;
pub mod status;
