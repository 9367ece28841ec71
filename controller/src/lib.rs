#![forbid(unsafe_code)]
pub mod backoff;
pub mod crd;
pub mod github;
pub mod listener;
pub mod runner;
pub mod scale_set;
pub mod scaler;
