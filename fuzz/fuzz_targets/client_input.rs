//! Client registration input (`latchkey_domain::clients`, the admin API's JSON body and
//! the CLI's fields) with its redirect-URI and scope rules, and the scope a request asks
//! for at the token and authorization endpoints (`latchkey_domain::scopes`).
#![no_main]

use latchkey_domain::clients::{self, ClientInput};
use latchkey_domain::scopes;
use latchkey_store::clients::is_scope_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if clients::valid_redirect_uri(text) {
            let url = url::Url::parse(text).expect("an accepted redirect URI parses");
            assert!(matches!(url.scheme(), "https" | "http"), "{text:?}");
            assert!(
                url.fragment().is_none() && url.username().is_empty(),
                "{text:?}"
            );
            if url.scheme() == "http" {
                let host = url.host_str().unwrap_or_default();
                assert!(
                    matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
                    "{text:?}"
                );
            }
        }

        let allowed: Vec<String> = ["openid", "profile", "email", "read:things", "write"]
            .map(String::from)
            .to_vec();
        if let Ok(granted) = scopes::resolve(Some(text), &allowed) {
            // Never more than the client holds, nor than was asked for.
            for token in granted.split(' ').filter(|t| !t.is_empty()) {
                assert!(allowed.iter().any(|a| a == token), "{granted:?}");
                assert!(scopes::contains(text, token), "{granted:?} from {text:?}");
                assert!(is_scope_token(token));
            }
        }
    }

    if let Ok(input) = serde_json::from_slice::<ClientInput>(data)
        && let Ok((record, secret)) = clients::create(input, 1_700_000_000_000)
    {
        // What was accepted passes validation again, and only confidential clients
        // get a secret.
        assert!(clients::validate(&record).is_ok(), "{record:?}");
        assert_eq!(secret.is_some(), !record.public);
        assert!(
            record
                .redirect_uris
                .iter()
                .all(|u| clients::valid_redirect_uri(u))
        );
        assert!(record.scopes.iter().all(|s| is_scope_token(s)));
    }
});
