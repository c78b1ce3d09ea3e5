//! Limits before trust, for `thoth enforcer serve`: nothing a peer sends is held, read or
//! stored before it has shown the right key, and nothing it can do ties up the service
//! for long.
//!
//! - [`accept_loop`]: at most `max_connections` connections at once (more wait in the
//!   listen backlog); the first byte of a connection, a TLS handshake and a request's
//!   headers each have a deadline (`--request-timeout-ms`, 10 s). HTTP/1.1 only: an
//!   HTTP/2 connection has no header deadline and can sit idle holding a slot, and the
//!   proxies speak HTTP/1.1 anyway.
//! - [`admit`] (middleware, before any handler or body extractor): the proxy key is
//!   checked on the headers, then the presented key's request rate, and only then is the
//!   body read — bounded per route and within a deadline. Approval posts carry their key
//!   in a small form body, so they are bounded tighter and checked by their handler.
//!
//! This module must never read a body before the key check where the key is a header,
//! and never let a slow peer hold a connection slot without a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The connection limits of [`accept_loop`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once at most.
    pub max_connections: usize,
    /// How long a TLS handshake, and then a request's headers, may each take.
    pub deadline: Duration,
}
/// Bodies of enforce and explain calls at most (1 MiB of arguments and the rest).
pub const CALL_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Bodies of telemetry batches at most.
pub const EVENTS_BODY_LIMIT: usize = 1024 * 1024;
/// Bodies of approval form posts at most.
pub const FORM_BODY_LIMIT: usize = 4 * 1024;
/// Distinct keys whose request rate is tracked at most.
const MAX_TRACKED_KEYS: usize = 1024;

/// What a route needs before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The proxy key, on the headers; then a body of at most this many bytes.
    ProxyKey(usize),
    /// The approver key, checked by the handler (it may be in the form body).
    Approver,
    /// Nothing (pages, health): no body is read.
    Open,
}

fn gate(path: &str) -> Gate {
    if path == "/v1/events/batch" {
        Gate::ProxyKey(EVENTS_BODY_LIMIT)
    } else if path.starts_with("/v1/holds/") {
        Gate::Approver
    } else if path.starts_with("/v1/") {
        Gate::ProxyKey(CALL_BODY_LIMIT)
    } else {
        Gate::Open
    }
}

/// A token bucket per presented key: `rate` requests a second, bursts of twice that.
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<[u8; 32], (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter of `per_second` requests a second per key.
    pub fn new(per_second: u32) -> Self {
        Self {
            rate: f64::from(per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// True when a request presenting `key` may go on now.
    pub fn admit(&self, key: &str) -> bool {
        use sha2::{Digest, Sha256};
        let id: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_KEYS && !buckets.contains_key(&id) {
            buckets.clear();
        }
        let burst = self.rate * 2.0;
        let (tokens, last) = buckets.entry(id).or_insert((burst, now));
        let refill = now.duration_since(*last).as_secs_f64() * self.rate;
        *tokens = (*tokens + refill).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Checks the proxy key on a request's headers; `Some(key)` names the presented key.
pub type KeyCheck = Box<dyn Fn(&axum::http::HeaderMap) -> Option<String> + Send + Sync>;

/// What [`admit`] needs of the service.
pub struct Admission {
    pub authorized: KeyCheck,
    pub rate: RateLimiter,
    /// How long a request's body may take to arrive, once its headers are in.
    pub deadline: Duration,
}

fn refuse(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

/// The admission middleware (see the module doc).
pub async fn admit(
    State(admission): State<Arc<Admission>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = match gate(request.uri().path()) {
        Gate::Open => return next.run(request).await,
        Gate::Approver => FORM_BODY_LIMIT,
        Gate::ProxyKey(limit) => {
            let Some(key) = (admission.authorized)(request.headers()) else {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing or wrong API key",
                );
            };
            if !admission.rate.admit(&key) {
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests for this key",
                );
            }
            limit
        }
    };
    let (parts, body) = request.into_parts();
    let deadline = admission.deadline;
    let bytes = match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body did not arrive in time",
            );
        }
        Ok(Err(_)) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("the body is over {limit} bytes"),
            );
        }
        Ok(Ok(bytes)) => bytes,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` resolves, with
/// at most `max_connections` connections at once.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(stop);
    loop {
        // A connection is accepted only when a slot is free: the rest wait in the
        // kernel's backlog instead of holding memory here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut stop => return,
        };
        let Ok(slot) = slot else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // A peer that connects and sends nothing gives up its slot at the deadline
            // (the header deadline only starts with the first byte).
            if !matches!(
                tokio::time::timeout(limits.deadline, tcp.readable()).await,
                Ok(Ok(()))
            ) {
                return;
            }
            let service = hyper_util::service::TowerToHyperService::new(app);
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .http1_only();
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.deadline);
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(limits.deadline, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
                None => {
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_gated_before_their_bodies() {
        assert_eq!(gate("/v1/enforce"), Gate::ProxyKey(CALL_BODY_LIMIT));
        assert_eq!(
            gate("/v1/enforce/hold/abc"),
            Gate::ProxyKey(CALL_BODY_LIMIT)
        );
        assert_eq!(gate("/v1/explain"), Gate::ProxyKey(CALL_BODY_LIMIT));
        assert_eq!(gate("/v1/events/batch"), Gate::ProxyKey(EVENTS_BODY_LIMIT));
        assert_eq!(gate("/v1/holds/abc/approve"), Gate::Approver);
        assert_eq!(gate("/approve/abc"), Gate::Open);
        assert_eq!(gate("/healthz"), Gate::Open);
    }

    #[test]
    fn the_rate_is_per_key_with_bursts_of_twice_the_rate() {
        let limiter = RateLimiter::new(5);
        let admitted = (0..20).filter(|_| limiter.admit("a")).count();
        assert_eq!(admitted, 10);
        assert!(limiter.admit("b"), "another key has its own bucket");
    }
}
