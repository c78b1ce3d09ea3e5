//! thoth's HTTP clients (enforcer, holds, explanations, telemetry, GovAPI, approve/deny,
//! the health probe): one client builder, one bounded body reader, and one rustls
//! configuration built with the `ring` provider (one crypto provider in the binary,
//! docs/architecture.md §1).
//!
//! No client follows a redirect: a 3xx is an answer like any other, so a key, a request
//! body or a decision can never travel to (or come from) another origin. Every body is
//! read in chunks up to a documented limit ([`ENFORCE_BODY_LIMIT`],
//! [`SMALL_BODY_LIMIT`]), never buffered whole, and one deadline bounds the whole
//! exchange, body included ([`exchange`]).
//!
//! Roots come from the OS trust store (where enterprise TLS-inspection roots live) plus
//! `THOTH_TLS_CA_BUNDLE` (PEM). `THOTH_TLS_PINNED_CERT_SHA256` adds a check after the
//! normal chain and host-name verification: the SHA-256 of the leaf certificate's DER
//! must be one of the pins; a mismatch fails the handshake, so the enforcer counts as
//! unreachable and the failure policy applies. `THOTH_TLS_VERIFY=false` is refused in
//! prod and loudly warned about elsewhere.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error as RustlsError, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::settings::TlsSettings;

/// Bytes of an enforce answer read at most (a MODIFY carries arguments).
pub const ENFORCE_BODY_LIMIT: usize = 1024 * 1024;
/// Bytes of a hold poll, explanation or approve/deny answer read at most.
pub const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// Bytes of one text from the enforcer copied into a client reply at most (reason,
/// explanation fields, approval URL…), ellipsis included.
pub const TEXT_LIMIT: usize = 2048;

/// The builder of every HTTP client thoth makes: thoth's TLS configuration, no
/// redirects ever followed, thoth's user agent. Callers add their timeouts.
pub fn client_builder(tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("thoth/", env!("CARGO_PKG_VERSION")))
}

/// An answer read within its limits.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Empty for a redirect (its body is not read).
    pub body: Vec<u8>,
    /// A redirect's `Location`, bounded, for the log (never followed).
    pub location: Option<String>,
}

impl Answer {
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }
}

/// Why an exchange gave no [`Answer`].
#[derive(Debug)]
pub enum Failure {
    /// The deadline passed (connecting, sending or reading the body).
    Timeout,
    /// No connection (refused, DNS, TLS handshake).
    Connect(String),
    /// The request failed before an answer.
    Request(String),
    /// The body ended early or could not be read.
    CutOff { status: u16 },
    /// The body is longer than the limit (nothing more of it is read).
    TooLarge { status: u16, limit: usize },
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Read(reqwest::Error),
}

/// Reads `response`'s body in chunks, failing as soon as it would exceed `limit` bytes
/// (at once when its `content-length` says so): never more than `limit` is held.
pub async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let announced = response.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::with_capacity(announced.map_or(0, |n| n as usize).min(limit));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if chunk.len() > limit - body.len() {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends `request` and reads its body (at most `limit` bytes), all within `deadline`:
/// a slow body ends at the deadline, not after it. A redirect is returned as it is,
/// its body unread, and never followed.
pub async fn exchange(
    request: reqwest::RequestBuilder,
    deadline: Duration,
    limit: usize,
) -> Result<Answer, Failure> {
    let exchange = async {
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Failure::Timeout
            } else if e.is_connect() {
                Failure::Connect(error_text(&e))
            } else {
                Failure::Request(error_text(&e))
            }
        })?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| bounded(&String::from_utf8_lossy(v.as_bytes()), 256));
            return Ok(Answer {
                status,
                body: Vec::new(),
                location,
            });
        }
        match read_capped(&mut response, limit).await {
            Ok(body) => Ok(Answer {
                status,
                body,
                location: None,
            }),
            Err(BodyError::TooLarge) => Err(Failure::TooLarge { status, limit }),
            Err(BodyError::Read(e)) if e.is_timeout() => Err(Failure::Timeout),
            Err(BodyError::Read(_)) => Err(Failure::CutOff { status }),
        }
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// A reqwest error's text without its URL (not secret, but it makes messages long).
pub fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}

/// `text` cut to at most `limit` bytes on a character boundary, with an ellipsis when
/// it was cut.
pub fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let end = text.floor_char_boundary(limit.saturating_sub('…'.len_utf8()));
    format!("{}…", &text[..end])
}

/// Why the TLS client configuration could not be built (the file and the fix).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS setup failed: {0}")]
    Setup(rustls::Error),
    #[error("THOTH_TLS_CA_BUNDLE {}: {source}", path.display())]
    ReadBundle {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("THOTH_TLS_CA_BUNDLE {}: not PEM certificates: {source}", path.display())]
    NotPem {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("THOTH_TLS_CA_BUNDLE {}: {source}", path.display())]
    BadRoot {
        path: std::path::PathBuf,
        source: rustls::Error,
    },
    #[error("THOTH_TLS_CA_BUNDLE {} holds no PEM certificate", path.display())]
    NoCertificate { path: std::path::PathBuf },
    #[error("TLS setup failed (no usable trust roots?): {0}")]
    NoRoots(rustls::client::VerifierBuilderError),
}

impl TlsSettings {
    /// The rustls client configuration (ALPN h2 and http/1.1).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(bundle) = &self.ca_bundle {
            let pem = std::fs::read(bundle).map_err(|source| TlsError::ReadBundle {
                path: bundle.clone(),
                source,
            })?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|source| TlsError::NotPem {
                    path: bundle.clone(),
                    source,
                })?;
                roots.add(cert).map_err(|source| TlsError::BadRoot {
                    path: bundle.clone(),
                    source,
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(TlsError::NoCertificate {
                    path: bundle.clone(),
                });
            }
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(TlsError::NoRoots)?;
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(Verifier {
            inner: webpki,
            verify: self.verify,
            pins: self.pins.clone(),
            schemes: provider
                .signature_verification_algorithms
                .supported_schemes(),
            verified: PinCache::new(self.pin_cache),
        });
        let mut config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

#[derive(Debug)]
struct Verifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    verify: bool,
    pins: Vec<[u8; 32]>,
    schemes: Vec<SignatureScheme>,
    verified: PinCache,
}

/// Pinned (host, leaf SHA-256) pairs that passed full verification recently. Keyed by
/// both: a cache keyed by host alone would wave through any certificate.
#[derive(Debug)]
pub struct PinCache {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<(String, [u8; 32]), std::time::Instant>>,
}

impl PinCache {
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl,
            entries: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// True when this exact pair was verified less than the TTL ago.
    pub fn fresh(&self, host: &str, leaf: &[u8; 32]) -> bool {
        let now = std::time::Instant::now();
        self.entries
            .lock()
            .map(|e| {
                e.get(&(host.to_string(), *leaf))
                    .is_some_and(|&until| now < until)
            })
            .unwrap_or(false)
    }

    pub fn remember(&self, host: &str, leaf: [u8; 32]) {
        if let Ok(mut e) = self.entries.lock() {
            if e.len() >= 256 {
                e.clear();
            }
            e.insert(
                (host.to_string(), leaf),
                std::time::Instant::now() + self.ttl,
            );
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, RustlsError> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        let host = server_name.to_str();
        let pinned = self.pins.contains(&seen);
        // A pinned certificate verified recently for this very host skips the chain walk.
        if self.verify && !(pinned && self.verified.fresh(&host, &seen)) {
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        if !self.pins.is_empty() {
            if !pinned {
                let expected: Vec<String> = self.pins.iter().map(hex::encode).collect();
                tracing::error!(
                    "TLS pin mismatch for {host}: expected sha256:{} but the server presented sha256:{}",
                    expected.join(", sha256:"),
                    hex::encode(seen)
                );
                return Err(RustlsError::General(
                    "certificate does not match THOTH_TLS_PINNED_CERT_SHA256".into(),
                ));
            }
            self.verified.remember(&host, seen);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A one-answer-per-connection HTTP server on 127.0.0.1: `answer` writes the raw
    /// response after the request head was read. Counts the connections it accepted.
    fn serve(
        answer: impl Fn(&mut TcpStream) + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    answer(&mut stream);
                });
            }
        });
        (url, accepted)
    }

    fn get(url: &str, deadline: Duration, limit: usize) -> (Result<Answer, Failure>, Duration) {
        let tls = TlsSettings::default().client_config().unwrap();
        let client = client_builder(tls).build().unwrap();
        let rt = crate::runtime::current_thread().unwrap();
        let started = std::time::Instant::now();
        let result = rt.block_on(exchange(client.get(url), deadline, limit));
        (result, started.elapsed())
    }

    #[test]
    fn bodies_are_read_up_to_their_limit_only() {
        // Announced too long: refused before reading.
        let (url, _) = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3145728\r\n\r\n");
            let _ = s.write_all(&vec![b' '; 3 << 20]);
        });
        let (got, _) = get(&url, Duration::from_secs(5), 1024);
        assert!(
            matches!(
                got,
                Err(Failure::TooLarge {
                    status: 200,
                    limit: 1024
                })
            ),
            "{got:?}"
        );
        // Not announced (chunked, endless): refused once past the limit.
        let (url, _) = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
            while s.write_all(chunk.as_bytes()).is_ok() {}
        });
        let (got, _) = get(&url, Duration::from_secs(5), 64 * 1024);
        assert!(matches!(got, Err(Failure::TooLarge { .. })), "{got:?}");
        // Exactly the limit: read whole.
        let (url, _) = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            for _ in 0..4 {
                let _ = s.write_all(format!("100\r\n{}\r\n", "x".repeat(256)).as_bytes());
            }
            let _ = s.write_all(b"0\r\n\r\n");
        });
        let (got, _) = get(&url, Duration::from_secs(5), 1024);
        let answer = got.unwrap();
        assert_eq!((answer.status, answer.body.len()), (200, 1024));
        assert!(answer.body.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn the_deadline_covers_the_body() {
        // One byte every 50 ms, for ever: the exchange ends at its deadline.
        let (url, _) = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n");
            while s.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let (got, took) = get(&url, Duration::from_millis(300), 1 << 20);
        assert!(matches!(got, Err(Failure::Timeout)), "{got:?}");
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(800),
            "{took:?}"
        );
    }

    #[test]
    fn redirects_are_answers_never_followed() {
        let (target, reached) = serve(|s| {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{\"decision\":\"ALLOW\"}",
            );
        });
        for status in [301, 302, 303, 307, 308] {
            let location = format!("{target}/v1/enforce");
            let (url, _) = serve(move |s| {
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n"
                    )
                    .as_bytes(),
                );
            });
            let (got, _) = get(&url, Duration::from_secs(5), 1024);
            let answer = got.unwrap();
            assert_eq!(answer.status, status);
            assert!(answer.is_redirect() && answer.body.is_empty());
            assert_eq!(
                answer.location.as_deref(),
                Some(format!("{target}/v1/enforce").as_str())
            );
        }
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "the target was never asked"
        );
    }

    #[test]
    fn texts_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("exactly10!", 10), "exactly10!");
        let cut = bounded(&"é".repeat(100), 11);
        assert_eq!(cut, format!("{}…", "é".repeat(4)));
        assert!(cut.len() <= 11);
        let cut = bounded(&"a".repeat(1 << 20), TEXT_LIMIT);
        assert!(cut.len() <= TEXT_LIMIT && cut.ends_with('…'));
    }

    #[test]
    fn the_pin_cache_is_keyed_by_host_and_certificate() {
        let cache = PinCache::new(std::time::Duration::from_secs(60));
        cache.remember("enforce.acme", [1; 32]);
        assert!(cache.fresh("enforce.acme", &[1; 32]));
        assert!(
            !cache.fresh("enforce.acme", &[2; 32]),
            "another certificate for the host"
        );
        assert!(!cache.fresh("other.host", &[1; 32]));
        let expired = PinCache::new(std::time::Duration::ZERO);
        expired.remember("h", [1; 32]);
        assert!(!expired.fresh("h", &[1; 32]));
    }
}
