//! Conformance suites: one `pub async fn` per behaviour, each taking the trait object, so
//! every backend is held to the same contract. A backend's tests call `run_all` once.
//!
//! Each check panics with a message naming the backend and the broken guarantee.

pub mod counters;
pub mod queue;
pub mod storage;
