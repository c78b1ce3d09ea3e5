//! The detectors: a stable name, a class, a version, the pattern that finds
//! candidates and the check that confirms them (`validate`).
//!
//! A detector's name and version are part of thoth's interface (policies name them in
//! `context.detections`, the enforcer gets them in `metadata.detections`): a change of
//! what a detector finds bumps its version; a name is never reused.
//!
//! Patterns use ASCII word boundaries (`(?-u:\b)`), which keep every pattern on the
//! lazy DFA; the invisible-character detector names code points itself.

use super::validate;

/// What a detector looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Credentials: keys, tokens, private keys.
    Secret,
    /// Personal data: e-mail addresses, phone numbers, SSNs, card numbers, IBANs.
    Pii,
    /// Cues of health information (HIPAA): record numbers, diagnosis codes, dates of
    /// birth. Cues, not proof: see the README's precision table.
    Phi,
    /// Text aimed at the model rather than the user: invisible characters, hidden
    /// instructions, links that carry data out.
    Injection,
}

impl Class {
    /// The class's name in settings and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Secret => "secret",
            Class::Pii => "pii",
            Class::Phi => "phi",
            Class::Injection => "injection",
        }
    }

    /// Every class, in order.
    pub const ALL: [Class; 4] = [Class::Secret, Class::Pii, Class::Phi, Class::Injection];
}

/// One detector.
#[derive(Debug)]
pub struct Detector {
    /// Stable name (`aws_access_key_id`).
    pub name: &'static str,
    pub class: Class,
    /// Bumped when what it finds changes.
    pub version: u32,
    /// The candidate pattern (its first capture group, when it has one, is the part
    /// confirmed, reported and redacted).
    pub pattern: &'static str,
    /// What a text must hold for the pattern to be worth running (a cheap pass
    /// over it tells; the pattern itself is the judge).
    pub gate: Gate,
    /// How far past its gate's hit a match of the pattern may reach (bytes): the
    /// window searched around each hit.
    pub reach: usize,
    /// Confirms a candidate (the captured text).
    pub confirm: fn(&str) -> bool,
}

/// What makes a text worth a detector's pattern.
#[derive(Debug, Clone, Copy)]
pub enum Gate {
    /// One of these literals, ASCII case ignored (every match of the pattern holds
    /// one).
    Literals(&'static [&'static str]),
    /// At least [`MIN_DIGITS`] ASCII digits (numbers: phones, SSNs, cards, IBANs).
    Digits,
    /// A byte of a character outside ASCII (invisible characters).
    NonAscii,
}

/// The reach of most patterns: none of their matches is longer.
pub const REACH: usize = 2048;
/// The reach of patterns whose matches can be long (a private key's body, a JWT with
/// many claims, a link carrying data).
pub const LONG_REACH: usize = 16 * 1024;

/// Digits a text holds at least for a numbering detector to run (an SSN has 9, the
/// shortest phone number matched 10, a card 13, an IBAN more).
pub const MIN_DIGITS: usize = 9;

fn any(_: &str) -> bool {
    true
}

fn not_example_email(text: &str) -> bool {
    // (RFC 2606 names are documentation, not people.)
    let domain = text
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    !(domain == "example.com"
        || domain == "example.org"
        || domain == "example.net"
        || domain.ends_with(".example"))
}

/// The detectors, in a fixed order (their index is their id in a scan).
pub const DETECTORS: &[Detector] = &[
    // --- secrets ---
    Detector {
        name: "aws_access_key_id",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)((?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})(?-u:\b)",
        gate: Gate::Literals(&["akia", "asia", "abia", "acca"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "aws_secret_access_key",
        class: Class::Secret,
        version: 1,
        pattern: r#"(?i)aws.{0,24}?(?:secret|sk)[a-z_ ]{0,24}?["'=: ]{1,4}([A-Za-z0-9/+]{40})(?-u:\b)"#,
        gate: Gate::Literals(&["aws"]),
        reach: REACH,
        confirm: validate::high_entropy_secret,
    },
    Detector {
        name: "gcp_service_account",
        class: Class::Secret,
        version: 1,
        pattern: r#"("type"\s*:\s*"service_account")"#,
        gate: Gate::Literals(&["service_account"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "azure_connection_string",
        class: Class::Secret,
        version: 1,
        pattern: r"(?i)(?:AccountKey|SharedAccessKey|SharedAccessSignature)=([A-Za-z0-9+/=%]{20,})",
        gate: Gate::Literals(&["accountkey=", "sharedaccesskey=", "sharedaccesssignature="]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "github_token",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?-u:\b)",
        gate: Gate::Literals(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "gitlab_token",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)(glpat-[A-Za-z0-9_\-]{20})(?-u:\b)",
        gate: Gate::Literals(&["glpat-"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "slack_token",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)(xox[abposr]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,})",
        gate: Gate::Literals(&["xox", "hooks.slack.com"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "stripe_key",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)((?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24,})(?-u:\b)",
        gate: Gate::Literals(&["sk_live_", "sk_test_", "rk_live_", "rk_test_"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "openai_key",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)(sk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_\-]{32,})(?-u:\b)",
        gate: Gate::Literals(&["sk-"]),
        reach: REACH,
        confirm: validate::high_entropy_secret,
    },
    Detector {
        name: "npm_token",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)(npm_[A-Za-z0-9]{36})(?-u:\b)",
        gate: Gate::Literals(&["npm_"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "pypi_token",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,})",
        gate: Gate::Literals(&["pypi-"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "private_key",
        class: Class::Secret,
        version: 1,
        pattern: r"(-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s:,\-]*?-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----)?)",
        gate: Gate::Literals(&["-----begin "]),
        reach: LONG_REACH,
        confirm: any,
    },
    Detector {
        name: "jwt",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})",
        gate: Gate::Literals(&["eyj"]),
        reach: LONG_REACH,
        confirm: any,
    },
    Detector {
        name: "url_credentials",
        class: Class::Secret,
        version: 1,
        pattern: r"(?-u:\b)[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^\s:/@]+:([^\s:/@]{3,})@[^\s/@]+",
        gate: Gate::Literals(&["://"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "secret_assignment",
        class: Class::Secret,
        version: 1,
        pattern: r#"(?i)(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|auth[_-]?key|client[_-]?secret)["']?\s{0,16}[:=]\s{0,16}["']?([^\s"',;]{12,512})"#,
        gate: Gate::Literals(&["pass", "pwd", "secret", "token", "key"]),
        reach: REACH,
        confirm: validate::high_entropy_secret,
    },
    // --- personal data ---
    Detector {
        name: "email_address",
        class: Class::Pii,
        version: 1,
        pattern: r"(?-u:\b)([A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24})(?-u:\b)",
        gate: Gate::Literals(&["@"]),
        reach: REACH,
        confirm: not_example_email,
    },
    Detector {
        name: "phone_number",
        class: Class::Pii,
        version: 1,
        pattern: r"(?:^|[^0-9A-Za-z+])((?:\+?1[ .\-]?)?\(?[2-9][0-9]{2}\)?[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}|\+[1-9][0-9]{1,3}[ .\-]?[0-9]{2,4}[ .\-]?[0-9]{3,4}[ .\-]?[0-9]{3,4})(?:$|[^0-9A-Za-z])",
        gate: Gate::Digits,
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "us_ssn",
        class: Class::Pii,
        version: 1,
        pattern: r"(?-u:\b)([0-9]{3}-[0-9]{2}-[0-9]{4})(?-u:\b)",
        gate: Gate::Digits,
        reach: REACH,
        confirm: validate::us_ssn,
    },
    Detector {
        name: "payment_card",
        class: Class::Pii,
        version: 1,
        pattern: r"(?-u:\b)([0-9]{4}[ \-][0-9]{4}[ \-][0-9]{4}[ \-][0-9]{1,4}|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5}|[0-9]{13,19})(?-u:\b)",
        gate: Gate::Digits,
        reach: REACH,
        confirm: validate::payment_card,
    },
    Detector {
        name: "iban",
        class: Class::Pii,
        version: 1,
        pattern: r"(?-u:\b)([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)(?-u:\b)",
        gate: Gate::Digits,
        reach: REACH,
        confirm: validate::iban,
    },
    // --- health information cues ---
    Detector {
        name: "medical_record_number",
        class: Class::Phi,
        version: 1,
        pattern: r"(?i)(?-u:\b)(?:MRN|medical[ _]record(?:[ _]?(?:number|no\.?|num|#))?|patient[ _]?id)\s{0,16}[:#=]?\s{0,16}([A-Z0-9\-]{5,20})(?-u:\b)",
        gate: Gate::Literals(&["mrn", "medical", "patient"]),
        reach: REACH,
        confirm: |id| id.bytes().any(|b| b.is_ascii_digit()),
    },
    Detector {
        name: "icd10_code",
        class: Class::Phi,
        version: 1,
        pattern: r"(?i:icd(?:-?10)?|diagnos[ie]s|dx)[^A-Za-z0-9]{1,4}(?:code[^A-Za-z0-9]{1,3})?([A-TV-Z][0-9][0-9AB](?:\.[0-9A-TV-Z]{1,4})?)(?-u:\b)",
        gate: Gate::Literals(&["icd", "diagnos", "dx"]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "date_of_birth",
        class: Class::Phi,
        version: 1,
        pattern: r#"(?i)(?-u:\b)(?:DOB|D\.O\.B\.|date[ _]of[ _]birth|birth[ _]?date|born(?: on)?)["']?\s{0,16}[:=\-]?\s{0,16}["']?([0-9]{1,2}[/.\-][0-9]{1,2}[/.\-][0-9]{2,4}|[0-9]{4}-[0-9]{2}-[0-9]{2}|[A-Za-z]{3,9}\.? [0-9]{1,2},? [0-9]{4})"#,
        gate: Gate::Literals(&["dob", "d.o.b", "birth", "born"]),
        reach: REACH,
        confirm: any,
    },
    // --- text aimed at the model ---
    Detector {
        name: "invisible_unicode",
        class: Class::Injection,
        version: 1,
        pattern: "([\u{E0000}-\u{E007F}\u{200B}-\u{200D}\u{2060}-\u{2064}\u{FEFF}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{180E}]+)",
        gate: Gate::NonAscii,
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "hidden_instruction",
        class: Class::Injection,
        version: 1,
        pattern: r"(?i)((?:ignore|disregard|forget|override)\s{1,16}(?:all\s{1,16}|any\s{1,16}|the\s{1,16})?(?:previous|prior|above|earlier|preceding|system)\s{1,16}(?:instructions?|prompts?|messages?|rules|directions)|<\s{0,16}/?\s{0,16}(?:IMPORTANT|SYSTEM|instructions?|admin)\s{0,16}>|(?-u:\b)you\s{1,16}are\s{1,16}now\s{1,16}(?:a|an|in)(?-u:\b)|do\s{1,16}not\s{1,16}(?:tell|inform|mention\s{1,16}(?:this\s{1,16})?to|reveal\s{1,16}(?:this\s{1,16})?to)\s{1,16}the\s{1,16}user)",
        gate: Gate::Literals(&[
            "ignore",
            "disregard",
            "forget",
            "override",
            "important",
            "system",
            "instruction",
            "admin",
            "now",
            "user",
        ]),
        reach: REACH,
        confirm: any,
    },
    Detector {
        name: "exfiltration_link",
        class: Class::Injection,
        version: 1,
        pattern: r#"(?i)(!\[[^\]]{0,512}\]\(\s{0,16}https?://[^)\s?]+\?[^)\s]*=[^)\s&]{16,}|<img[^>]{0,512}src\s{0,16}=\s{0,16}["']https?://[^"'\s?]+\?[^"'\s]*=[^"'\s&]{16,})"#,
        gate: Gate::Literals(&["![", "<img"]),
        reach: LONG_REACH,
        confirm: any,
    },
    Detector {
        name: "cross_tool_instruction",
        class: Class::Injection,
        version: 1,
        pattern: r"(?i)((?:before|after|instead\s{1,16}of|whenever|when)\s{1,16}(?:using|calling|invoking|running)\s{1,16}(?:the\s{1,16}|any\s{1,16})?(?:other\s{1,16}|another\s{1,16})?(?:tool|function)s?(?-u:\b)|(?:always|must|first)\s{1,16}(?:call|use|invoke|run)\s{1,16}(?:the\s{1,16})?`?[A-Za-z0-9_\-]{2,64}`?\s{1,16}(?:tool|function)(?-u:\b))",
        gate: Gate::Literals(&["tool", "function"]),
        reach: REACH,
        confirm: any,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_patterns_compile() {
        let mut names: Vec<&str> = DETECTORS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DETECTORS.len());
        for d in DETECTORS {
            if let Err(e) = regex::Regex::new(d.pattern) {
                panic!("{}: {e}", d.name);
            }
            assert!(
                d.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            );
        }
    }
}
