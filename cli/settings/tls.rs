//! The TLS settings of thoth's HTTPS clients (the enforcer, GovAPI, telemetry), from
//! the environment and the managed file: what to verify and pin, never how (`crate::net`
//! builds the client configuration from them).

use super::{EnvVars, SettingsError};
use crate::domain::Environment;

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
