//! What the listener needs from the scale-set service, as a trait, so the
//! listener loop can be tested against a scripted twin instead of a server.
//! [`ActionsClient`] is the real implementation.

use std::future::Future;

use super::actions::ActionsClient;
use super::error::Error;
use super::queue::ScaleSetMessage;
use super::wire::{RunnerScaleSet, RunnerScaleSetSession};

/// The listener's view of one scale set's service: session lifecycle, the
/// message queue, and a liveness check of the scale set itself.
pub trait ScaleSetService: Send + Sync {
    fn create_session(
        &self,
        scale_set_id: i64,
        owner: &str,
    ) -> impl Future<Output = Result<RunnerScaleSetSession, Error>> + Send;

    fn refresh_session(
        &self,
        scale_set_id: i64,
        session_id: &str,
    ) -> impl Future<Output = Result<RunnerScaleSetSession, Error>> + Send;

    fn delete_session(
        &self,
        scale_set_id: i64,
        session_id: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// `Ok(None)`: nothing new within the long poll. May replace `session`
    /// (refreshed queue token).
    fn get_message(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        last_message_id: i64,
        max_capacity: u32,
    ) -> impl Future<Output = Result<Option<ScaleSetMessage>, Error>> + Send;

    fn acknowledge_message(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        message_id: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The runner request ids actually acquired.
    fn acquire_jobs(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        runner_request_ids: &[i64],
    ) -> impl Future<Output = Result<Vec<i64>, Error>> + Send;

    /// [`Error::ScaleSetNotFound`] once the service deleted the scale set.
    fn scale_set(
        &self,
        scale_set_id: i64,
    ) -> impl Future<Output = Result<RunnerScaleSet, Error>> + Send;
}

// Inherent methods win over trait methods in `self.x(...)`, so each of these
// calls the real client, not itself.
impl ScaleSetService for ActionsClient {
    async fn create_session(
        &self,
        scale_set_id: i64,
        owner: &str,
    ) -> Result<RunnerScaleSetSession, Error> {
        ActionsClient::create_session(self, scale_set_id, owner).await
    }

    async fn refresh_session(
        &self,
        scale_set_id: i64,
        session_id: &str,
    ) -> Result<RunnerScaleSetSession, Error> {
        ActionsClient::refresh_session(self, scale_set_id, session_id).await
    }

    async fn delete_session(&self, scale_set_id: i64, session_id: &str) -> Result<(), Error> {
        ActionsClient::delete_session(self, scale_set_id, session_id).await
    }

    async fn get_message(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        last_message_id: i64,
        max_capacity: u32,
    ) -> Result<Option<ScaleSetMessage>, Error> {
        ActionsClient::get_message(self, scale_set_id, session, last_message_id, max_capacity).await
    }

    async fn acknowledge_message(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        message_id: i64,
    ) -> Result<(), Error> {
        ActionsClient::acknowledge_message(self, scale_set_id, session, message_id).await
    }

    async fn acquire_jobs(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        runner_request_ids: &[i64],
    ) -> Result<Vec<i64>, Error> {
        ActionsClient::acquire_jobs(self, scale_set_id, session, runner_request_ids).await
    }

    async fn scale_set(&self, scale_set_id: i64) -> Result<RunnerScaleSet, Error> {
        ActionsClient::scale_set(self, scale_set_id).await
    }
}

#[cfg(test)]
mod tests {
    //! A scripted twin, to show the trait is enough to drive a listener step
    //! without a server.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::github::secret::Secret;
    use crate::github::wire::{JobAvailable, JobMessage, JobMessageBase};

    #[derive(Default)]
    struct Scripted {
        messages: Mutex<VecDeque<Option<ScaleSetMessage>>>,
        acknowledged: Mutex<Vec<i64>>,
        acquired: Mutex<Vec<i64>>,
    }

    impl ScaleSetService for Scripted {
        async fn create_session(
            &self,
            scale_set_id: i64,
            owner: &str,
        ) -> Result<RunnerScaleSetSession, Error> {
            Ok(RunnerScaleSetSession {
                session_id: format!("s-{scale_set_id}"),
                owner_name: owner.to_owned(),
                runner_scale_set: None,
                message_queue_url: "http://queue.test/m".to_owned(),
                message_queue_access_token: Secret::new("q"),
                statistics: None,
            })
        }
        async fn refresh_session(
            &self,
            scale_set_id: i64,
            _: &str,
        ) -> Result<RunnerScaleSetSession, Error> {
            self.create_session(scale_set_id, "refreshed").await
        }
        async fn delete_session(&self, _: i64, _: &str) -> Result<(), Error> {
            Ok(())
        }
        async fn get_message(
            &self,
            _: i64,
            _: &mut RunnerScaleSetSession,
            _: i64,
            _: u32,
        ) -> Result<Option<ScaleSetMessage>, Error> {
            Ok(self.messages.lock().unwrap().pop_front().flatten())
        }
        async fn acknowledge_message(
            &self,
            _: i64,
            _: &mut RunnerScaleSetSession,
            id: i64,
        ) -> Result<(), Error> {
            self.acknowledged.lock().unwrap().push(id);
            Ok(())
        }
        async fn acquire_jobs(
            &self,
            _: i64,
            _: &mut RunnerScaleSetSession,
            ids: &[i64],
        ) -> Result<Vec<i64>, Error> {
            self.acquired.lock().unwrap().extend_from_slice(ids);
            Ok(ids.to_vec())
        }
        async fn scale_set(&self, scale_set_id: i64) -> Result<RunnerScaleSet, Error> {
            Err(Error::ScaleSetNotFound {
                operation: format!("get scale set {scale_set_id}"),
                message: "gone".into(),
            })
        }
    }

    /// One listener step, written only against the trait.
    async fn step(
        service: &impl ScaleSetService,
        session: &mut RunnerScaleSetSession,
        last: &mut i64,
    ) -> Result<(), Error> {
        let Some(message) = service.get_message(7, session, *last, 10).await? else {
            return Ok(());
        };
        *last = message.message_id;
        service
            .acknowledge_message(7, session, message.message_id)
            .await?;
        let available: Vec<i64> = message
            .jobs
            .iter()
            .filter_map(|job| match job {
                JobMessage::Available(m) => Some(m.base.runner_request_id),
                _ => None,
            })
            .collect();
        service.acquire_jobs(7, session, &available).await?;
        Ok(())
    }

    fn available(id: i64) -> JobMessage {
        let base: JobMessageBase = serde_json::from_value(
            serde_json::json!({"messageType": "JobAvailable", "runnerRequestId": id}),
        )
        .unwrap();
        JobMessage::Available(JobAvailable {
            acquire_job_url: String::new(),
            base,
        })
    }

    #[tokio::test]
    async fn a_scripted_twin_drives_a_listener_step() {
        let twin = Scripted::default();
        twin.messages.lock().unwrap().extend([
            None,
            Some(ScaleSetMessage {
                message_id: 3,
                statistics: None,
                jobs: vec![available(100), available(101)],
            }),
        ]);
        let mut session = twin.create_session(7, "runway").await.unwrap();
        let mut last = 0;
        step(&twin, &mut session, &mut last).await.unwrap();
        step(&twin, &mut session, &mut last).await.unwrap();
        assert_eq!(last, 3);
        assert_eq!(*twin.acknowledged.lock().unwrap(), vec![3]);
        assert_eq!(*twin.acquired.lock().unwrap(), vec![100, 101]);
        assert_eq!(
            twin.scale_set(7).await.unwrap_err().metric_label(),
            "scale_set_not_found"
        );
    }

    #[test]
    fn the_real_client_implements_the_trait() {
        fn assert_service<T: ScaleSetService>() {}
        assert_service::<ActionsClient>();
    }
}
