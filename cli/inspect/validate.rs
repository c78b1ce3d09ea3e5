//! Checks that turn a pattern match into a finding: checksums and the issuers' rules
//! (Luhn and IIN ranges for card numbers, the SSA's rules for SSNs, ISO 13616 mod 97
//! for IBANs) and the entropy of a value assigned to a secret-sounding name.
//!
//! Pure functions over the matched text; they never allocate beyond a small digit
//! buffer and never panic.

/// Card numbers: 13–19 digits (spaces and dashes between them allowed), the Luhn
/// checksum, and an issuer's prefix and length (Visa, Mastercard, American Express,
/// Discover, JCB, Diners Club, UnionPay).
pub fn payment_card(text: &str) -> bool {
    let digits: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let len = digits.len();
    if !(13..=19).contains(&len) || !luhn(&digits) {
        return false;
    }
    let prefix = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    match len {
        15 => p2 == 34 || p2 == 37,
        14 => (300..=305).contains(&p3) || p2 == 36 || p2 == 38,
        _ => {
            (p1 == 4 && matches!(len, 13 | 16 | 19))
                || (len == 16 && ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)))
                || (matches!(len, 16 | 19) && (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3)))
                || (matches!(len, 16..=19) && (3528..=3589).contains(&p4))
                || (matches!(len, 16..=19) && p2 == 62 && p6 != 0)
        }
    }
}

/// The Luhn checksum over decimal digits.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// US SSNs as `AAA-GG-SSSS`: the area is not 000, 666 or 900–999, the group not 00,
/// the serial not 0000 (the SSA's rules since 2011), and not the numbers the SSA
/// retired after they were published (078-05-1120, 219-09-9999).
pub fn us_ssn(text: &str) -> bool {
    let digits: Vec<u32> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    if digits.len() != 9 {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        digits
            .get(range)
            .unwrap_or_default()
            .iter()
            .fold(0u32, |acc, d| acc * 10 + d)
    };
    let (area, group, serial) = (number(0..3), number(3..5), number(5..9));
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !matches!((area, group, serial), (78, 5, 1120) | (219, 9, 9999))
}

/// IBANs: a country of the ISO 13616 registry with its length, and the mod-97
/// checksum (spaces between groups allowed).
pub fn iban(text: &str) -> bool {
    let compact: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let Some(country) = compact.get(..2) else {
        return false;
    };
    let Some(&(_, length)) = IBAN_LENGTHS.iter().find(|(c, _)| c.as_bytes() == country) else {
        return false;
    };
    if compact.len() != length || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for &b in tail.iter().chain(head) {
        let value = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// Countries of the IBAN registry and their IBAN lengths (the common ones: a country
/// missing here is not found, never misread).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AT", 20),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TR", 26),
    ("UA", 29),
];

/// Shannon entropy of `text` in bits per byte.
pub fn entropy(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        counts[usize::from(b)] += 1;
    }
    let len = text.len() as f64;
    if len == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// A value assigned to a secret-sounding name that looks generated: long enough, of
/// mixed classes and high entropy (a placeholder such as `changeme` or `********`, a
/// word or a variable reference is not).
pub fn high_entropy_secret(value: &str) -> bool {
    let classes = [
        value.bytes().any(|b| b.is_ascii_lowercase()),
        value.bytes().any(|b| b.is_ascii_uppercase()),
        value.bytes().any(|b| b.is_ascii_digit()),
        value.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|c| **c)
    .count();
    // A reference (`process.env.DB_PASSWORD`, `$SECRET`, `config.api_key`) names a
    // secret without holding it: a generated value has a digit or a symbol.
    let generated = value.bytes().any(|b| {
        b.is_ascii_digit() || !(b.is_ascii_alphabetic() || matches!(b, b'_' | b'.' | b'-'))
    });
    value.len() >= 12
        && classes >= 2
        && generated
        && entropy(value) >= 3.5
        && !value.starts_with('$')
        // (thoth's own redaction is not a secret: a second pass finds nothing.)
        && !value.starts_with("[REDACTED:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_issuer_rules() {
        // Documented test numbers of the card networks.
        for card in [
            "4111 1111 1111 1111",
            "5555-5555-5555-4444",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "2223003122003222",
        ] {
            assert!(payment_card(card), "{card}");
        }
        for not_card in [
            "4111111111111112",
            "1234567812345670",
            "0000000000000000",
            "411111111111",
        ] {
            assert!(!payment_card(not_card), "{not_card}");
        }
        for ssn in ["123-45-6789", "536-22-1234"] {
            assert!(us_ssn(ssn), "{ssn}");
        }
        for not_ssn in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
            "078-05-1120",
        ] {
            assert!(!us_ssn(not_ssn), "{not_ssn}");
        }
        for good in [
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "FR1420041010050500013M02606",
        ] {
            assert!(iban(good), "{good}");
        }
        for bad in [
            "GB82WEST12345698765433",
            "XX82WEST12345698765432",
            "DE8937040044053201300",
        ] {
            assert!(!iban(bad), "{bad}");
        }
        assert!(high_entropy_secret("q9X!r2LmZ8pW4tVb"));
        for weak in [
            "changeme",
            "************",
            "passwordpassword",
            "$DATABASE_PASSWORD",
        ] {
            assert!(!high_entropy_secret(weak), "{weak}");
        }
    }
}
