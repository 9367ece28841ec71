//! The fake GitHub over real HTTP, driven the way a scale-set client drives
//! GitHub: PAT or App -> registration token -> Actions service -> scale
//! set, session, long poll, acquire, JIT runners; plus what goes wrong
//! (expired tokens, conflicts, faults). Times are milliseconds.

mod auth;
mod faults;
mod queue;
mod scale_sets;
mod support;
