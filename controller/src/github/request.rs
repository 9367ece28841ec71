//! The one path every scale-set service and message-queue request takes:
//! build it, send it through the [`Transport`](super::transport::Transport)
//! (which waits for the host's rate-limit bucket) under the client's retry
//! policy, then strip the BOM and decode a 2xx body, or map the error
//! response to its [`Error`]. Endpoint methods only name the method, the
//! path (or queue URL), the body and the type they expect back.
//!
//! Service paths carry the admin token unless the call names another (acquire
//! jobs carries the queue token); a 401 to the admin token drops the cached
//! connection so that the next call connects again. Queue URLs never ask for
//! the admin connection: a poll must not cause a registration.

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use octocrab::OctoBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::actions::{ActionsClient, service_url};
use super::error::Error;
use super::retry;
use super::secret::Secret;
use super::transport::HttpResponse;
use super::wire::strip_bom;

/// Where a request goes.
enum Target<'a> {
    /// `<actions url>/<path>?api-version=6.0-preview&<query>`.
    Service {
        path: String,
        query: &'a [(&'a str, &'a str)],
    },
    /// A URL the service handed out (the session's message queue), as is.
    Queue(Url),
}

/// One request, as an endpoint describes it; [`Call::send`] puts it on the
/// wire.
#[must_use = "a call does nothing until it is sent"]
pub(super) struct Call<'a, B: ?Sized = ()> {
    client: &'a ActionsClient,
    operation: &'a str,
    method: Method,
    target: Target<'a>,
    /// Sent after `Authorization`, in this order.
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<&'a B>,
    /// `None`: the admin token.
    token: Option<Secret>,
    sensitive: bool,
}

impl ActionsClient {
    /// A JSON request to the scale-set service at `path`.
    pub(super) fn call<'a>(
        &'a self,
        operation: &'a str,
        method: Method,
        path: impl Into<String>,
    ) -> Call<'a> {
        Call {
            client: self,
            operation,
            method,
            target: Target::Service {
                path: path.into(),
                query: &[],
            },
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: None,
            token: None,
            sensitive: false,
        }
    }

    /// A request to the message queue at `url` with the session's queue
    /// token and no other header.
    pub(super) fn queue_call<'a>(
        &'a self,
        operation: &'a str,
        method: Method,
        url: Url,
        token: Secret,
    ) -> Call<'a> {
        Call {
            client: self,
            operation,
            method,
            target: Target::Queue(url),
            headers: Vec::new(),
            body: None,
            token: Some(token),
            sensitive: false,
        }
    }
}

impl<'a, B: Serialize + ?Sized> Call<'a, B> {
    /// Query parameters after `api-version` (service paths only).
    pub(super) fn query(mut self, pairs: &'a [(&'a str, &'a str)]) -> Self {
        if let Target::Service { query, .. } = &mut self.target {
            *query = pairs;
        }
        self
    }

    /// `body` as JSON.
    pub(super) fn json<C: Serialize + ?Sized>(self, body: &'a C) -> Call<'a, C> {
        Call {
            client: self.client,
            operation: self.operation,
            method: self.method,
            target: self.target,
            headers: self.headers,
            body: Some(body),
            token: self.token,
            sensitive: self.sensitive,
        }
    }

    pub(super) fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Carries `token` instead of the admin token.
    pub(super) fn token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// The answer carries credentials (sessions, JIT configs): decode errors
    /// must not quote it.
    pub(super) fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Decodes the 2xx answer, or maps the error response.
    pub(super) async fn fetch<T: DeserializeOwned>(self) -> Result<T, Error> {
        let response = self.send().await?;
        decode(self.operation, &response, self.sensitive)
    }

    /// Any 2xx, its body ignored; otherwise the error response, mapped.
    pub(super) async fn no_content(self) -> Result<(), Error> {
        let response = self.send().await?;
        no_content(self.operation, &response)
    }

    /// Sends with retries and returns the last response, whatever its status.
    pub(super) async fn send(&self) -> Result<HttpResponse, Error> {
        let operation = self.operation;
        let inner = &self.client.inner;
        let mut connection = None;
        let url = match &self.target {
            Target::Service { path, query } => {
                let connection = connection.insert(inner.auth.actions_connection().await?);
                service_url(&connection.url, path, query)
            }
            Target::Queue(url) => url.clone(),
        };
        let body =
            self.body.map(serde_json::to_vec).transpose().map_err(|e| {
                Error::protocol(operation, format!("encoding the request failed: {e}"))
            })?;
        let token = match (&self.token, connection) {
            (Some(token), _) => token.clone(),
            (None, Some(connection)) => connection.token,
            (None, None) => inner.auth.actions_connection().await?.token,
        };
        let authorization = bearer(operation, &token)?;
        let (url, body, authorization) = (&url, &body, &authorization);
        let response = retry::run(&inner.retry, operation, || {
            let mut request = Request::builder()
                .method(self.method.clone())
                .uri(url.as_str())
                .header(AUTHORIZATION, authorization.clone());
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            let request = request.body(
                body.clone()
                    .map(OctoBody::from)
                    .unwrap_or_else(OctoBody::empty),
            );
            async move {
                let request = request.map_err(|e| {
                    Error::protocol(operation, format!("building the request failed: {e}"))
                })?;
                inner.transport.send(operation, request).await
            }
        })
        .await?;
        if response.status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            inner.auth.invalidate_actions_connection().await;
        }
        Ok(response)
    }
}

/// `Authorization: Bearer <token>`, marked sensitive.
pub(super) fn bearer(operation: &str, token: &Secret) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| Error::protocol(operation, "the token is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Decodes a 2xx body (BOM stripped) or maps the error. `sensitive` bodies
/// (sessions, JIT configs, tokens) keep serde's quoting out of error messages.
pub(super) fn decode<T: DeserializeOwned>(
    operation: &str,
    response: &HttpResponse,
    sensitive: bool,
) -> Result<T, Error> {
    if !response.status.is_success() {
        return Err(Error::from_response(operation, response));
    }
    serde_json::from_slice(strip_bom(&response.body))
        .map_err(|e| Error::decode(operation, &e, sensitive))
}

/// `Ok` for any 2xx, otherwise the error response, mapped.
pub(super) fn no_content(operation: &str, response: &HttpResponse) -> Result<(), Error> {
    if response.status.is_success() {
        Ok(())
    } else {
        Err(Error::from_response(operation, response))
    }
}
