#![forbid(unsafe_code)]
pub mod backoff;
pub mod conditions;
pub mod crd;
pub mod github;
pub mod kube_client;
pub mod leader;
pub mod listener;
pub mod manager;
pub mod metrics;
pub mod patch;
pub mod runner;
pub mod scale_set;
pub mod scaler;
