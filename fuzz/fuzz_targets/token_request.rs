//! What a client sends to the token service and with each request: the
//! `scope` parameters, the `Authorization` header, and bearer tokens.
//! Properties: a scope splits into parts that join back to it; a Basic
//! header yields exactly the user and password encoded in it; no forged or
//! mangled token verifies.
#![no_main]
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wharf::auth::token::TokenKeys;
use wharf::auth::{parse_authorization, Presented, Scope};

fn keys() -> &'static TokenKeys {
    static K: OnceLock<TokenKeys> = OnceLock::new();
    K.get_or_init(|| TokenKeys::from_secret(&[7u8; 64]).unwrap())
}

fuzz_target!(|v: &str| {
    // A token request's query: scope=... (several, space-separated).
    for (k, scopes) in form_urlencoded::parse(v.as_bytes()) {
        if k != "scope" {
            continue;
        }
        for s in scopes.split(' ') {
            if let Some(sc) = Scope::parse(s) {
                assert_eq!(format!("{}:{}:{}", sc.kind, sc.name, sc.actions), s);
                assert!(!sc.kind.contains(':') && !sc.name.contains(':'));
                assert!(sc.wanted().count() <= 3 * sc.actions.split(',').count());
            }
        }
    }
    match parse_authorization(v) {
        Ok(Presented::Basic { user, pass }) => {
            let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            let Ok(Presented::Basic { user: u2, pass: p2 }) = parse_authorization(&format!("Basic {enc}")) else {
                panic!("re-encoded Basic credentials refused")
            };
            assert!(u2 == user && p2 == pass && !user.contains(':'));
        }
        Ok(Presented::Bearer(t)) => assert!(keys().verify(t).is_none(), "a forged token verified"),
        Err(_) => {}
    }
    assert!(keys().verify(v).is_none(), "a forged token verified");
});
