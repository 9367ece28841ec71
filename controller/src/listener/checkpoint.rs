//! Where a listener resumes, and how that point is persisted: the
//! [`Checkpoint`] trait (the reconciler writes the `RunnerScaleSet` status)
//! and an in-memory implementation.

use std::future::Future;
use std::sync::{Arc, Mutex};

/// Where a listener starts: what the `RunnerScaleSet` status recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// The session the previous listener had; deleted before a new one is
    /// created, so that a restart does not meet its own session as a 409.
    pub session_id: Option<String>,
    /// The last message handled (0: none). Polls carry it, so a message
    /// handled but not acknowledged before a crash is not handled again.
    /// Reset it to 0 when the scale set is created again.
    pub last_message_id: i64,
}

/// Any error a [`Checkpoint`] implementation returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Persists the [`Resume`] point (the reconciler writes it to the
/// `RunnerScaleSet` status). Called when the session changes and after
/// each message is handled, before it is acknowledged.
pub trait Checkpoint: Send + Sync {
    fn save(
        &self,
        session_id: Option<&str>,
        last_message_id: i64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// A [`Checkpoint`] in memory: for tests, and for running without status.
/// Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoint {
    inner: Arc<Mutex<(Resume, u64)>>,
}

impl MemoryCheckpoint {
    pub fn new(resume: Resume) -> Self {
        Self {
            inner: Arc::new(Mutex::new((resume, 0))),
        }
    }

    /// The last saved point.
    pub fn resume(&self) -> Resume {
        self.lock().0.clone()
    }

    /// How many times [`Checkpoint::save`] was called.
    pub fn saves(&self) -> u64 {
        self.lock().1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Resume, u64)> {
        // A panic elsewhere cannot leave a (Resume, u64) half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Checkpoint for MemoryCheckpoint {
    async fn save(&self, session_id: Option<&str>, last_message_id: i64) -> Result<(), BoxError> {
        let mut inner = self.lock();
        inner.0 = Resume {
            session_id: session_id.map(str::to_owned),
            last_message_id,
        };
        inner.1 += 1;
        Ok(())
    }
}
