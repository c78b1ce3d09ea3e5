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

use super::tls::is_loopback_url;
use super::{Secret, SettingsError};
use crate::domain::Environment;

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

/// An endpoint as given: http(s), checked as every outbound URL is, and https in
/// staging and prod unless it is a loopback address.
fn url(name: &str, value: &str, environment: Environment) -> Result<String, SettingsError> {
    let value = value.trim();
    if !(value.starts_with("https://") || value.starts_with("http://")) {
        return Err(bad(name, "must be an http:// or https:// URL"));
    }
    super::env::check_url(value).map_err(|why| bad(name, why))?;
    if environment != Environment::Dev && value.starts_with("http://") && !is_loopback_url(value) {
        return Err(bad(
            name,
            "must use https outside dev (plain http is allowed only to a loopback address)",
        ));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// `%XX` decoded (the OTel spec's encoding of header values; `+` stays a `+`).
fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
            let v =
                percent_decoded(v.trim()).ok_or_else(|| bad(name, "a value has a bad %-escape"))?;
            Ok((k.trim().to_string(), v))
        })
        .collect()
}

/// Headers an exporter must not be given: they would change how (or where) the
/// collector reads what it receives.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "traceparent",
];

fn headers(value: &str) -> Result<Vec<(String, Secret)>, SettingsError> {
    const NAME: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    pairs(NAME, value)?
        .into_iter()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(bad(
                    NAME,
                    &format!("the header {lower} is the exporter's own"),
                ));
            }
            let valid_name = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let valid_value = v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
            if !valid_name || !valid_value {
                // (The value is a secret: not quoted.)
                return Err(bad(
                    NAME,
                    &format!("the header {k:?} is not a valid HTTP header"),
                ));
            }
            Ok((k, Secret::new(v)))
        })
        .collect()
}

impl OtlpSettings {
    /// The export settings, or `None` when export is off: no endpoint, disabled
    /// (`OTEL_SDK_DISABLED`, or `telemetry_off`: `THOTH_TELEMETRY=off`), forbidden by the
    /// managed settings, or variables that do not read (a warning says which: an MCP
    /// client's own `OTEL_*` settings must not stop thoth from running). Under a
    /// managed endpoint only it decides: the user's endpoints, headers, timeout,
    /// service name, resource attributes and switches are ignored.
    pub fn resolve(
        var: &dyn Fn(&str) -> Option<String>,
        managed: Option<&ManagedOtlp>,
        environment: Environment,
        telemetry_off: bool,
    ) -> Option<Self> {
        match Self::read(var, managed, environment, telemetry_off) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!("OTLP export is off: {e}");
                None
            }
        }
    }

    fn read(
        var: &dyn Fn(&str) -> Option<String>,
        managed: Option<&ManagedOtlp>,
        environment: Environment,
        telemetry_off: bool,
    ) -> Result<Option<Self>, SettingsError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        const ENDPOINTS: [&str; 3] = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ];
        match managed {
            Some(ManagedOtlp::Off) => {
                if ENDPOINTS.iter().any(|n| var(n).is_some()) {
                    tracing::warn!(
                        "OTLP export is off by the managed settings: the OTEL_EXPORTER_OTLP_*ENDPOINT variables are ignored"
                    );
                }
                Ok(None)
            }
            Some(ManagedOtlp::Fixed(base)) => {
                if ENDPOINTS.iter().any(|n| var(n).is_some())
                    || var("OTEL_EXPORTER_OTLP_HEADERS").is_some()
                {
                    tracing::warn!(
                        "OTLP export goes to the collector the managed settings name: the user's OTEL_EXPORTER_OTLP_* variables are ignored"
                    );
                }
                let base = url("otlp_endpoint", base, environment)?;
                Ok(Some(Self {
                    logs_url: format!("{base}/v1/logs"),
                    traces_url: format!("{base}/v1/traces"),
                    headers: Vec::new(),
                    timeout: Duration::from_secs(10),
                    service_name: "thoth".into(),
                    resource: Vec::new(),
                }))
            }
            None => {
                let disabled =
                    var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
                if disabled || telemetry_off {
                    return Ok(None);
                }
                let endpoint =
                    |name: &str| var(name).map(|v| url(name, &v, environment)).transpose();
                let base = endpoint("OTEL_EXPORTER_OTLP_ENDPOINT")?;
                let signal = |name: &str, own: &str, path: &str| -> Result<String, SettingsError> {
                    let none = var(own).is_some_and(|v| v.trim() == "none");
                    if none {
                        return Ok(String::new());
                    }
                    Ok(endpoint(name)?
                        .or_else(|| base.as_ref().map(|b| format!("{b}{path}")))
                        .unwrap_or_default())
                };
                let logs_url = signal(
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                    "OTEL_LOGS_EXPORTER",
                    "/v1/logs",
                )?;
                let traces_url = signal(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "OTEL_TRACES_EXPORTER",
                    "/v1/traces",
                )?;
                if logs_url.is_empty() && traces_url.is_empty() {
                    return Ok(None);
                }
                if let Some(protocol) = var("OTEL_EXPORTER_OTLP_PROTOCOL")
                    && protocol.trim() != "http/protobuf"
                {
                    return Err(bad(
                        "OTEL_EXPORTER_OTLP_PROTOCOL",
                        "thoth exports http/protobuf only",
                    ));
                }
                let timeout = match var("OTEL_EXPORTER_OTLP_TIMEOUT") {
                    Some(ms) => {
                        let ms: u64 = ms.trim().parse().map_err(|_| {
                            bad("OTEL_EXPORTER_OTLP_TIMEOUT", "must be milliseconds")
                        })?;
                        Duration::from_millis(ms.clamp(100, 60_000))
                    }
                    None => Duration::from_secs(10),
                };
                let headers = match var("OTEL_EXPORTER_OTLP_HEADERS") {
                    Some(h) => headers(&h)?,
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        vars: &[(&str, &str)],
        managed: Option<&ManagedOtlp>,
        environment: Environment,
    ) -> Result<Option<OtlpSettings>, SettingsError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtlpSettings::read(
            &|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            managed,
            environment,
            false,
        )
    }

    fn dev(
        vars: &[(&str, &str)],
        managed: Option<&ManagedOtlp>,
    ) -> Result<Option<OtlpSettings>, SettingsError> {
        read(vars, managed, Environment::Dev)
    }

    #[test]
    fn the_standard_variables_set_export_and_the_managed_settings_win() {
        assert!(dev(&[], None).unwrap().is_none(), "off without an endpoint");
        let s = dev(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Basic dXNl+cjp%3D, x-team = sec",
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "999999"),
                ("OTEL_SERVICE_NAME", "edr-thoth"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.logs_url, "http://127.0.0.1:4318/v1/logs");
        assert_eq!(s.traces_url, "", "OTEL_TRACES_EXPORTER=none");
        assert_eq!(s.headers[0].0, "authorization");
        assert_eq!(
            s.headers[0].1.expose(),
            "Basic dXNl+cjp=",
            "+ stays, %3D decodes"
        );
        assert_eq!(s.headers[1].1.expose(), "sec");
        assert_eq!(s.timeout, Duration::from_secs(60), "clamped");
        assert_eq!(s.service_name, "edr-thoth");
        let user = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://elsewhere.example"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=mine"),
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "100"),
            ("OTEL_RESOURCE_ATTRIBUTES", "host.name=other"),
        ];
        let fixed = ManagedOtlp::Fixed("https://collector.corp".into());
        let s = dev(&user, Some(&fixed))
            .unwrap()
            .expect("the fleet's wins over disabling");
        assert_eq!(s.logs_url, "https://collector.corp/v1/logs");
        assert!(s.headers.is_empty() && s.resource.is_empty());
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert!(dev(&user, Some(&ManagedOtlp::Off)).unwrap().is_none());
        assert!(dev(&user, None).unwrap().is_none(), "OTEL_SDK_DISABLED");
        let vars: Vec<(String, String)> = vec![(user[0].0.into(), user[0].1.into())];
        let off = OtlpSettings::read(
            &|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            None,
            Environment::Dev,
            true,
        );
        assert!(off.unwrap().is_none(), "THOTH_TELEMETRY=off");
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c.example");
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "content-type=text/plain"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x=a%ZZ"),
        ] {
            let vars = if name == endpoint.0 {
                vec![(name, value)]
            } else {
                vec![endpoint, (name, value)]
            };
            let err = dev(&vars, None).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(name)),
                "{name}: {err:?}"
            );
        }
        // Outside dev, plain http only to loopback.
        let plain = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.corp:4318")];
        assert!(read(&plain, None, Environment::Prod).is_err());
        let local = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
        assert!(read(&local, None, Environment::Prod).unwrap().is_some());
    }
}
