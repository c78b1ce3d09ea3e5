//! Where OTLP export goes, from the standard `OTEL_*` variables and the managed
//! settings (which win: a fleet can fix the collector or forbid export, so a user's
//! variables cannot send audit events elsewhere).
//!
//! Read: `OTEL_SDK_DISABLED`, `OTEL_EXPORTER_OTLP_ENDPOINT` (the base: `/v1/logs` and
//! `/v1/traces` are appended), `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` and
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as they are), `OTEL_EXPORTER_OTLP_HEADERS`
//! (`k=v,k2=v2`, values percent-decoded; secrets), `OTEL_EXPORTER_OTLP_TIMEOUT`
//! (milliseconds, clamped to 100–60000), `OTEL_EXPORTER_OTLP_PROTOCOL` (only
//! `http/protobuf`), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. Export is
//! off unless an endpoint is set.

use std::time::Duration;

use super::{Secret, SettingsError};

/// What the managed settings say about OTLP (`otlp_endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedOtlp {
    /// Export goes to this base endpoint only; the user's endpoints are ignored.
    Fixed(String),
    /// No export, whatever the variables say.
    Off,
}

/// Where and how OTLP export goes.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    pub logs_url: String,
    pub traces_url: String,
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`, as given.
    pub resource: Vec<(String, String)>,
}

fn bad(name: &str, why: &str) -> SettingsError {
    SettingsError::new(format!("{name}: {why}"))
}

fn url(name: &str, value: &str) -> Result<String, SettingsError> {
    let value = value.trim();
    if value.starts_with("https://") || value.starts_with("http://") {
        Ok(value.trim_end_matches('/').to_string())
    } else {
        Err(bad(name, "must be an http:// or https:// URL"))
    }
}

/// `k=v,k2=v2` with percent-encoded values (the OTel spec's form).
fn pairs(name: &str, value: &str) -> Result<Vec<(String, String)>, SettingsError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(name, "each entry must be key=value"))?;
            let v: String = form_urlencoded::parse(format!("v={}", v.trim()).as_bytes())
                .map(|(_, v)| v.into_owned())
                .next()
                .unwrap_or_default();
            Ok((k.trim().to_string(), v))
        })
        .collect()
}

impl OtlpSettings {
    /// The export settings, or `None` when export is off (no endpoint, disabled, or
    /// forbidden by the managed settings).
    pub fn resolve(
        var: &dyn Fn(&str) -> Option<String>,
        managed: Option<&ManagedOtlp>,
    ) -> Result<Option<Self>, SettingsError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if managed == Some(&ManagedOtlp::Off) {
            if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
                tracing::warn!(
                    "OTLP export is off by the managed settings: OTEL_EXPORTER_OTLP_ENDPOINT is ignored"
                );
            }
            return Ok(None);
        }
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let (logs_url, traces_url) = match managed {
            Some(ManagedOtlp::Fixed(base)) => {
                let named = [
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                ];
                if named.iter().any(|n| var(n).is_some()) {
                    tracing::warn!(
                        "OTLP export goes to the collector the managed settings name: the OTEL_EXPORTER_OTLP_*ENDPOINT variables are ignored"
                    );
                }
                let base = base.trim_end_matches('/');
                (format!("{base}/v1/logs"), format!("{base}/v1/traces"))
            }
            _ => {
                let base = var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|v| url("OTEL_EXPORTER_OTLP_ENDPOINT", &v))
                    .transpose()?;
                let logs = var("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
                    .map(|v| url("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &v))
                    .transpose()?
                    .or_else(|| base.as_ref().map(|b| format!("{b}/v1/logs")));
                let traces = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    .map(|v| url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &v))
                    .transpose()?
                    .or_else(|| base.as_ref().map(|b| format!("{b}/v1/traces")));
                match (logs, traces) {
                    (Some(l), Some(t)) => (l, t),
                    (Some(l), None) => (l, String::new()),
                    (None, Some(t)) => (String::new(), t),
                    (None, None) => return Ok(None),
                }
            }
        };
        if let Some(protocol) = var("OTEL_EXPORTER_OTLP_PROTOCOL")
            && protocol.trim() != "http/protobuf"
        {
            return Err(bad(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "thoth exports http/protobuf only; unset it or set it to http/protobuf",
            ));
        }
        let timeout = match var("OTEL_EXPORTER_OTLP_TIMEOUT") {
            Some(ms) => {
                let ms: u64 = ms
                    .trim()
                    .parse()
                    .map_err(|_| bad("OTEL_EXPORTER_OTLP_TIMEOUT", "must be milliseconds"))?;
                Duration::from_millis(ms.clamp(100, 60_000))
            }
            None => Duration::from_secs(10),
        };
        let headers = match var("OTEL_EXPORTER_OTLP_HEADERS") {
            Some(h) => pairs("OTEL_EXPORTER_OTLP_HEADERS", &h)?
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
            None => Vec::new(),
        };
        let resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(r) => pairs("OTEL_RESOURCE_ATTRIBUTES", &r)?,
            None => Vec::new(),
        };
        Ok(Some(Self {
            logs_url,
            traces_url,
            headers,
            timeout,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "thoth".into()),
            resource,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        vars: &[(&str, &str)],
        managed: Option<&ManagedOtlp>,
    ) -> Result<Option<OtlpSettings>, SettingsError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtlpSettings::resolve(
            &|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            managed,
        )
    }

    #[test]
    fn the_standard_variables_set_export_and_the_managed_settings_win() {
        assert!(
            resolve(&[], None).unwrap().is_none(),
            "off without an endpoint"
        );
        let s = resolve(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20abc, x-team = sec",
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "999999"),
                ("OTEL_SERVICE_NAME", "edr-thoth"),
            ],
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.logs_url, "http://127.0.0.1:4318/v1/logs");
        assert_eq!(s.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(s.headers[0].0, "authorization");
        assert_eq!(s.headers[0].1.expose(), "Bearer abc");
        assert_eq!(s.headers[1].1.expose(), "sec");
        assert_eq!(s.timeout, Duration::from_secs(60), "clamped");
        assert_eq!(s.service_name, "edr-thoth");
        let own = resolve(
            &[(
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "https://logs.example/ingest",
            )],
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (own.logs_url.as_str(), own.traces_url.as_str()),
            ("https://logs.example/ingest", "")
        );
        let user = [("OTEL_EXPORTER_OTLP_ENDPOINT", "https://elsewhere.example")];
        let fixed = ManagedOtlp::Fixed("https://collector.corp".into());
        let s = resolve(&user, Some(&fixed)).unwrap().unwrap();
        assert_eq!(s.logs_url, "https://collector.corp/v1/logs");
        assert!(resolve(&user, Some(&ManagedOtlp::Off)).unwrap().is_none());
        assert!(
            resolve(&[("OTEL_SDK_DISABLED", "true"), user[0]], None)
                .unwrap()
                .is_none()
        );
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
        ] {
            let vars = if name == user[0].0 {
                vec![(name, value)]
            } else {
                vec![user[0], (name, value)]
            };
            let err = resolve(&vars, None).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(name)),
                "{name}: {err:?}"
            );
        }
    }
}
