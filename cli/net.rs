//! TLS for thoth's HTTP clients (enforcer, telemetry, GovAPI): one rustls configuration
//! built with the `ring` provider (one crypto provider in the binary, DESIGN §1).
//!
//! Roots come from the OS trust store (where enterprise TLS-inspection roots live) plus
//! `THOTH_TLS_CA_BUNDLE` (PEM). `THOTH_TLS_PINNED_CERT_SHA256` adds a check after the
//! normal chain and host-name verification: the SHA-256 of the leaf certificate's DER
//! must be one of the pins; a mismatch fails the handshake, so the enforcer counts as
//! unreachable and the failure policy applies. `THOTH_TLS_VERIFY=false` is refused in
//! prod and loudly warned about elsewhere.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error as TlsError, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::settings::{EnvVars, Environment, SettingsError};

/// The TLS settings that matter to a client.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub verify: bool,
    pub ca_bundle: Option<std::path::PathBuf>,
    pub pins: Vec<[u8; 32]>,
    /// How long a verified (host, leaf certificate) pair skips re-verification.
    pub pin_cache: std::time::Duration,
    /// The ARN the service is asked to attest (`THOTH_TLS_REQUIRE_AWS_BACKED_CERTS`).
    pub aws_certificate_arn: Option<String>,
}

impl TlsSettings {
    pub fn from_env(
        env: &EnvVars,
        environment: Environment,
        managed_verify: Option<bool>,
    ) -> Result<Self, SettingsError> {
        if managed_verify == Some(true) && env.tls_verify == Some(false) {
            return Err(SettingsError::new(
                "THOTH_TLS_VERIFY=false is refused: managed settings require certificate verification",
            ));
        }
        let verify = managed_verify.or(env.tls_verify).unwrap_or(true);
        if !verify {
            if environment == Environment::Prod {
                return Err(SettingsError::new(
                    "THOTH_TLS_VERIFY=false is refused in prod: use THOTH_TLS_CA_BUNDLE for a private CA",
                ));
            }
            tracing::warn!(
                "THOTH_TLS_VERIFY=false: the enforcer's certificate is NOT verified; anyone on the network path can impersonate it"
            );
        }
        let aws_certificate_arn = if env.tls_require_aws == Some(true) {
            let arn = env.tls_acm_cert_arn.clone().or_else(|| env.tls_private_ca_arn.clone()).ok_or_else(|| {
                SettingsError::new(
                    "THOTH_TLS_REQUIRE_AWS_BACKED_CERTS=true needs THOTH_TLS_AWS_ACM_CERT_ARN or THOTH_TLS_AWS_PRIVATE_CA_ARN (thoth checks only its syntax; the service attests it)",
                )
            })?;
            Some(arn)
        } else {
            None
        };
        Ok(Self {
            verify,
            ca_bundle: env.tls_ca_bundle.clone(),
            pins: env.tls_pins.clone(),
            pin_cache: env
                .tls_pin_cache
                .unwrap_or(std::time::Duration::from_secs(300)),
            aws_certificate_arn,
        })
    }

    /// The rustls client configuration (ALPN h2 and http/1.1).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, SettingsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SettingsError::new(format!("TLS setup failed: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(bundle) = &self.ca_bundle {
            let pem = std::fs::read(bundle).map_err(|e| {
                SettingsError::new(format!("THOTH_TLS_CA_BUNDLE {}: {e}", bundle.display()))
            })?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| {
                    SettingsError::new(format!(
                        "THOTH_TLS_CA_BUNDLE {}: not PEM certificates: {e}",
                        bundle.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    SettingsError::new(format!("THOTH_TLS_CA_BUNDLE {}: {e}", bundle.display()))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(SettingsError::new(format!(
                    "THOTH_TLS_CA_BUNDLE {} holds no PEM certificate",
                    bundle.display()
                )));
            }
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| {
            SettingsError::new(format!("TLS setup failed (no usable trust roots?): {e}"))
        })?;
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
    ) -> Result<ServerCertVerified, TlsError> {
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
                return Err(TlsError::General(
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
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// True for a URL whose host is a loopback address (a sidecar enforcer).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or_default();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn loopback_urls() {
        for (url, want) in [
            ("http://127.0.0.1:8080/x", true),
            ("http://127.9.9.9", true),
            ("http://localhost:1", true),
            ("http://[::1]:9/", true),
            ("http://10.0.0.1", false),
            ("http://enforce.acme.aten.security", false),
            ("http://127.0.0.1.evil.com", false),
        ] {
            assert_eq!(is_loopback_url(url), want, "{url}");
        }
    }
}
