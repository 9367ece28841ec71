#![forbid(unsafe_code)]
pub mod github;
