//! The scale set's message queue (PROTOCOL.md section 4): long poll,
//! acknowledge, acquire jobs. All three carry the session's queue token; when
//! it has expired (401) the session is refreshed once (PATCH), the caller's
//! copy updated, and the request repeated.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use url::Url;

use super::actions::ActionsClient;
use super::error::Error;
use super::request::{decode, no_content};
use super::secret::Secret;
use super::secret::redact;
use super::transport::HttpResponse;
use super::wire::{
    JobMessage, List, RunnerScaleSetSession, RunnerScaleSetStatistic, drop_nulls, strip_bom,
};

/// The only message type the queue delivers today.
pub const JOB_MESSAGES: &str = "RunnerScaleSetJobMessages";

/// One queue message with its body decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSetMessage {
    pub message_id: i64,
    pub statistics: Option<RunnerScaleSetStatistic>,
    pub jobs: Vec<JobMessage>,
}

impl ActionsClient {
    /// Waits (about 50 s, server side) for the next message after
    /// `last_message_id`. `None`: nothing new (202).
    pub async fn get_message(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        last_message_id: i64,
        max_capacity: u32,
    ) -> Result<Option<ScaleSetMessage>, Error> {
        let operation =
            format!("poll messages of scale set {scale_set_id} after message {last_message_id}");
        let url = poll_url(&operation, &session.message_queue_url, last_message_id)?;
        let (operation, url) = (&operation, &url);
        let response = self
            .with_queue_token(scale_set_id, session, |token| async move {
                self.queue_call(operation, Method::GET, url.clone(), token)
                    .header(
                        ACCEPT,
                        HeaderValue::from_static("application/json; api-version=6.0-preview"),
                    )
                    .header(MAX_CAPACITY.clone(), HeaderValue::from(max_capacity))
                    .send()
                    .await
            })
            .await?;
        match response.status {
            StatusCode::ACCEPTED => Ok(None),
            StatusCode::OK => decode_message(operation, &response.body).map(Some),
            _ => Err(Error::from_response(operation, &response)),
        }
    }

    /// Tells the queue the message was handled; unacknowledged messages are
    /// delivered again.
    pub async fn acknowledge_message(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        message_id: i64,
    ) -> Result<(), Error> {
        let operation = format!("acknowledge message {message_id} of scale set {scale_set_id}");
        let url = acknowledge_url(&operation, &session.message_queue_url, message_id)?;
        let (operation, url) = (&operation, &url);
        let response = self
            .with_queue_token(scale_set_id, session, |token| async move {
                self.queue_call(operation, Method::DELETE, url.clone(), token)
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .send()
                    .await
            })
            .await?;
        no_content(operation, &response)
    }

    /// Claims jobs for this scale set; returns the ids actually acquired.
    pub async fn acquire_jobs(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        runner_request_ids: &[i64],
    ) -> Result<Vec<i64>, Error> {
        let operation = format!(
            "acquire {} job(s) for scale set {scale_set_id}",
            runner_request_ids.len()
        );
        let path = format!("_apis/runtime/runnerscalesets/{scale_set_id}/acquirejobs");
        let (operation, path) = (&operation, &path);
        let response = self
            .with_queue_token(scale_set_id, session, |token| async move {
                self.call(operation, Method::POST, path.as_str())
                    .json(runner_request_ids)
                    .token(token)
                    .send()
                    .await
            })
            .await?;
        let acquired: List<i64> = decode(operation, &response, false)?;
        Ok(acquired.value)
    }

    /// Runs `attempt` with the queue token; on 401 refreshes the session once
    /// and runs it again with the new token.
    async fn with_queue_token<F, Fut>(
        &self,
        scale_set_id: i64,
        session: &mut RunnerScaleSetSession,
        attempt: F,
    ) -> Result<HttpResponse, Error>
    where
        F: Fn(Secret) -> Fut,
        Fut: Future<Output = Result<HttpResponse, Error>>,
    {
        let response = attempt(session.message_queue_access_token.clone()).await?;
        if response.status != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        tracing::debug!(
            scale_set_id,
            "message queue token expired, refreshing the session"
        );
        *session = self
            .refresh_session(scale_set_id, &session.session_id)
            .await?;
        attempt(session.message_queue_access_token.clone()).await
    }
}

/// How many runners the listener may still start; the service sizes its
/// answer by it.
static MAX_CAPACITY: HeaderName = HeaderName::from_static("x-scalesetmaxcapacity");

/// The poll URL: the queue URL plus `lastMessageId=N` when N > 0, keeping
/// (and, for `lastMessageId`, replacing) whatever query the URL has.
pub fn poll_url(operation: &str, queue_url: &str, last_message_id: i64) -> Result<Url, Error> {
    let mut url = parse_queue_url(operation, queue_url)?;
    if last_message_id <= 0 {
        return Ok(url);
    }
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "lastMessageId")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let had_it = url.query_pairs().any(|(k, _)| k == "lastMessageId");
    if had_it {
        url.set_query(None);
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &others {
            pairs.append_pair(k, v);
        }
    }
    url.query_pairs_mut()
        .append_pair("lastMessageId", &last_message_id.to_string());
    Ok(url)
}

/// `<queue URL path>/<messageId>`, query kept.
pub fn acknowledge_url(operation: &str, queue_url: &str, message_id: i64) -> Result<Url, Error> {
    let mut url = parse_queue_url(operation, queue_url)?;
    let path = format!("{}/{message_id}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

fn parse_queue_url(operation: &str, queue_url: &str) -> Result<Url, Error> {
    Url::parse(queue_url).map_err(|e| {
        Error::protocol(
            operation,
            format!("the session's messageQueueUrl is not a URL: {e}"),
        )
    })
}

/// Decodes a 200 poll answer: the envelope, its type, and the job messages
/// encoded as a string inside it. `null` reads as absent everywhere. Once
/// the message id is known, a message that cannot be read is
/// [`Error::UndecodableMessage`], so the listener can skip it; statistics
/// that do not decode read as absent (the listener keeps the last ones: a
/// guess could scale runners down); a job message that does not decode is
/// [`JobMessage::Undecodable`] and costs only itself.
pub fn decode_message(operation: &str, body: &[u8]) -> Result<ScaleSetMessage, Error> {
    let mut envelope: serde_json::Value =
        serde_json::from_slice(strip_bom(body)).map_err(|e| Error::decode(operation, &e, false))?;
    drop_nulls(&mut envelope);
    let Some(message_id) = envelope.get("messageId").and_then(|id| id.as_i64()) else {
        return Err(Error::protocol(
            operation,
            "the message has no numeric messageId",
        ));
    };
    let undecodable = |problem: String| Error::UndecodableMessage {
        operation: operation.to_owned(),
        message_id,
        problem: redact(&problem),
    };
    let Some(message_type) = envelope.get("messageType").and_then(|t| t.as_str()) else {
        return Err(undecodable("messageType is missing or not a string".into()));
    };
    if message_type != JOB_MESSAGES {
        return Err(Error::UnexpectedMessageType {
            message_id,
            message_type: message_type.to_owned(),
        });
    }
    let body = match envelope.get("body") {
        None => "",
        Some(serde_json::Value::String(body)) => body.as_str(),
        Some(_) => return Err(undecodable("body is not a string".into())),
    };
    let statistics = envelope.get("statistics").and_then(|statistics| {
        RunnerScaleSetStatistic::deserialize(statistics)
            .inspect_err(|error| {
                tracing::warn!(
                    message_id,
                    error = %redact(&error.to_string()),
                    "the statistics of a message do not decode; keeping the last ones"
                );
            })
            .ok()
    });
    let jobs = JobMessage::decode_body(body)
        .map_err(|e| undecodable(format!("the body is not a JSON array of job messages: {e}")))?;
    Ok(ScaleSetMessage {
        message_id,
        statistics,
        jobs,
    })
}

#[cfg(test)]
mod tests;
