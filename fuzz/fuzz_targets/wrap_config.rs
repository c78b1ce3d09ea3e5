//! `wrap-config`'s edit on arbitrary text: never panics; what it writes parses in the
//! client's dialect; wrapping again changes nothing; and restoring in place from the
//! record gives back the exact original text (when the input held no wrapped entry).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use thoth::CLIENTS as ALL;
use thoth::{WrapSpec, check, survey, unwrap, wrap};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Some(&client) = ALL.get(usize::from(selector & 0x7f) % ALL.len()) else {
        return;
    };
    let spec = WrapSpec {
        thoth: "/usr/local/bin/thoth".into(),
        flags: vec!["--tenant-id".into(), "acme".into()],
        embed_api_key: (selector & 0x80 != 0).then(|| "k-1".into()),
    };
    let Ok(once) = wrap(text, client, &spec, &BTreeMap::new()) else {
        return;
    };
    check(&once.text, client.dialect()).expect("the wrapped text parses");
    let twice = wrap(&once.text, client, &spec, &once.originals).expect("wraps again");
    assert_eq!(twice.text, once.text, "wrapping twice equals wrapping once");
    if survey(text, client).is_ok_and(|s| s.wrapped == 0) {
        let (back, _) = unwrap(&once.text, client, &once.originals).expect("unwraps");
        assert_eq!(back, text, "restoring in place gives the original back");
    }
});
