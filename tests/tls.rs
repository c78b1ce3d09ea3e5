//! TLS to the enforcer with a CA generated for the test (rcgen): the CA bundle makes a
//! private CA trusted, a correct pin passes, a wrong pin blocks (and names both
//! fingerprints), and an untrusted certificate blocks.

use std::time::Duration;

use crate::util::{Enforcer, Proxy, READ_ONLY, Scratch, fixture};
use serde_json::json;
use sha2::{Digest, Sha256};

const KEY: &str = "proxy-key-tls";

struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
    leaf_sha256: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_sha256: hex::encode(Sha256::digest(leaf.der())),
    }
}

fn read_file_through(s: &Scratch, url: &str, envs: &[(&str, &str)]) -> (serde_json::Value, String) {
    let mut cmd = s.thoth();
    cmd.args(["run", "--agent-id", "fixture", "--"])
        .arg(fixture())
        .env("THOTH_ENFORCER_URL", url)
        .env("THOTH_API_KEY", KEY);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut p = Proxy::start(cmd);
    p.send(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "read_file", "arguments": {} } }).to_string());
    let v = p.recv_json();
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    (v, p.stderr())
}

#[test]
fn ca_bundle_pins_and_untrusted_certificates() {
    let s = Scratch::new("tls");
    let pki = pki();
    let cert = s.write("leaf.pem", &pki.leaf_pem);
    let key = s.write("leaf.key", &pki.leaf_key_pem);
    let ca = s.write("ca.pem", &pki.ca_pem);
    let enforcer = Enforcer::start_with(
        &s,
        READ_ONLY,
        KEY,
        "approver-tls",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = enforcer.url.rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}");
    let ca = ca.to_str().unwrap();

    // The private CA, trusted through the bundle.
    let (v, _) = read_file_through(&s, &url, &[("THOTH_TLS_CA_BUNDLE", ca)]);
    assert_eq!(v["result"]["isError"], false, "{v}");

    // The right pin (any case, with or without the prefix) passes.
    for pin in [
        format!("sha256:{}", pki.leaf_sha256),
        pki.leaf_sha256.to_uppercase(),
    ] {
        let (v, _) = read_file_through(
            &s,
            &url,
            &[
                ("THOTH_TLS_CA_BUNDLE", ca),
                ("THOTH_TLS_PINNED_CERT_SHA256", &pin),
            ],
        );
        assert_eq!(v["result"]["isError"], false, "{v}");
    }

    // A wrong pin: the enforcer is unreachable, the failure policy blocks.
    let wrong = "ab".repeat(32);
    let (v, stderr) = read_file_through(
        &s,
        &url,
        &[
            ("THOTH_TLS_CA_BUNDLE", ca),
            ("THOTH_TLS_PINNED_CERT_SHA256", &wrong),
        ],
    );
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(v["error"]["data"]["fallback"], true);
    assert!(
        stderr.contains(&format!("expected sha256:{wrong}")) && stderr.contains(&pki.leaf_sha256),
        "{stderr}"
    );

    // Without the CA the certificate is untrusted: blocked.
    let (v, _) = read_file_through(&s, &url, &[]);
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(v["error"]["data"]["fallback"], true);
}
