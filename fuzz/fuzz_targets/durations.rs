//! Duration and rate settings: the CRDs' durations (`latchkey_crds::duration`, from any
//! namespace's `OAuthClient`/`SigningKey`) and the service's flags and environment
//! (`latchkey::config`: durations, rates, per-route rates, trusted proxies).
#![no_main]

use latchkey::config;
use latchkey_crds::duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = duration::parse(text) {
        // `format` writes what `parse` reads back, and the service reads it alike.
        let formatted = duration::format(d);
        assert_eq!(
            duration::parse(&formatted),
            Ok(d),
            "{text:?} -> {formatted:?}"
        );
        assert_eq!(config::parse_duration(text), Ok(d), "{text:?}");
    }
    let _ = config::parse_duration(text);
    if let Ok(Some(rate)) = config::parse_rate(text) {
        assert!(rate.limit >= 1 && !rate.period.is_zero(), "{text:?}");
    }
    let _ = config::parse_route_rates(text);
    let _ = config::parse_proxy(text);
});
