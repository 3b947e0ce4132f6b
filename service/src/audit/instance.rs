//! The running instance: [`probe`] fetches what an instance answers ([`Observed`]) and
//! [`audit_instance`] judges it against the configuration it should have, one pure
//! function per part of the answer.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use super::Severity;
use super::rules::is_loopback;
use super::{Finding, finding, sorted};
use crate::config::Config;

/// What a running instance answered. Each part is `Err` with the reason when it could
/// not be fetched.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The URL audited (its scheme and host matter).
    pub url: Url,
    /// `/.well-known/openid-configuration`.
    pub discovery: Result<Value, String>,
    /// `/.well-known/jwks.json`.
    pub jwks: Result<Value, String>,
    /// Response headers of `GET /` (names lower-case), sent with an `Origin` of
    /// [`PROBE_ORIGIN`].
    pub headers: Result<Vec<(String, String)>, String>,
}

/// The foreign origin the probe sends to see whether CORS lets any page in.
pub const PROBE_ORIGIN: &str = "https://latchkey-audit.invalid";

/// Fetches what [`audit_instance`] judges. Certificates are verified with the
/// platform's trust store; redirects are not followed.
pub async fn probe(url: &Url) -> Observed {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build();
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            let reason = format!("HTTP client: {e}");
            return Observed {
                url: url.clone(),
                discovery: Err(reason.clone()),
                jwks: Err(reason.clone()),
                headers: Err(reason),
            };
        }
    };
    let join = |path: &str| {
        let base = url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    };
    let get_json = |path: &'static str| {
        let client = client.clone();
        let target = join(path);
        async move {
            let response = client
                .get(&target)
                .send()
                .await
                .map_err(|e| format!("GET {target}: {}", error_chain(&e)))?;
            if !response.status().is_success() {
                return Err(format!("GET {target}: HTTP {}", response.status()));
            }
            response
                .json::<Value>()
                .await
                .map_err(|e| format!("GET {target}: {}", error_chain(&e)))
        }
    };
    let root = join("/");
    let headers = async {
        let response = client
            .get(&root)
            .header("origin", PROBE_ORIGIN)
            .send()
            .await
            .map_err(|e| format!("GET {root}: {}", error_chain(&e)))?;
        Ok::<_, String>(
            response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let (discovery, jwks, headers) = tokio::join!(
        get_json("/.well-known/openid-configuration"),
        get_json("/.well-known/jwks.json"),
        headers
    );
    Observed {
        url: url.clone(),
        discovery,
        jwks,
        headers,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The rules that judge an instance's answers, in report order.
const INSTANCE_RULES: &[fn(&Config, &Observed, &mut Vec<Finding>)] =
    &[transport, discovery, jwks, headers];

/// Every weakness of a running instance, judged against the `config` it should have.
pub fn audit_instance(config: &Config, observed: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in INSTANCE_RULES {
        rule(config, observed, &mut out);
    }
    sorted(out)
}

/// The audited URL itself: plain http on a non-loopback host.
fn transport(_config: &Config, observed: &Observed, out: &mut Vec<Finding>) {
    let https = observed.url.scheme() == "https";
    if !https && !is_loopback(&observed.url) {
        out.push(finding(
            Severity::High,
            "live-url-http",
            format!(
                "{} answers over plain http on a non-loopback host",
                observed.url
            ),
            "serve the instance only over https:// (TLS at the ingress) and set LATCHKEY_ISSUER to it",
        ));
    }
}

/// The discovery document: present, with the configured issuer, over https://.
fn discovery(config: &Config, observed: &Observed, out: &mut Vec<Finding>) {
    match &observed.discovery {
        Err(reason) => out.push(finding(
            Severity::High,
            "live-unreachable",
            format!("discovery could not be checked: {reason}"),
            "check the --url and that the instance is up",
        )),
        Ok(doc) => match doc.get("issuer").and_then(Value::as_str) {
            None => out.push(finding(
                Severity::High,
                "live-discovery-invalid",
                "the discovery document has no issuer",
                "check that --url points at Latchkey",
            )),
            Some(live) => {
                let live = live.trim_end_matches('/');
                if live != config.issuer() {
                    out.push(finding(
                        Severity::Medium,
                        "live-issuer-mismatch",
                        format!(
                            "the instance's issuer is {live}, the configuration's is {}",
                            config.issuer()
                        ),
                        "audit with the instance's own settings, or fix LATCHKEY_ISSUER",
                    ));
                }
                if let Ok(url) = Url::parse(live)
                    && url.scheme() == "http"
                    && !is_loopback(&url)
                {
                    out.push(finding(
                        Severity::High,
                        "live-issuer-http",
                        format!("the instance's issuer {live} is http:// on a non-loopback host"),
                        "set LATCHKEY_ISSUER=https://<public host>",
                    ));
                }
                if live != observed.url.as_str().trim_end_matches('/') {
                    out.push(finding(
                        Severity::Info,
                        "live-issuer-differs-from-url",
                        format!("the audited URL {} is not the issuer {live}", observed.url),
                        "audit the public issuer URL, as clients see it",
                    ));
                }
            }
        },
    }
}

/// The JWKS: at least one key, each of an acceptable type, algorithm and size.
fn jwks(_config: &Config, observed: &Observed, out: &mut Vec<Finding>) {
    match &observed.jwks {
        Err(reason) => out.push(finding(
            Severity::High,
            "live-unreachable",
            format!("the JWKS could not be checked: {reason}"),
            "check the --url and that the instance is up",
        )),
        Ok(doc) => {
            let keys = doc.get("keys").and_then(Value::as_array);
            match keys {
                None => out.push(finding(
                    Severity::Medium,
                    "live-jwks-empty",
                    "the JWKS publishes no key: no token can be verified",
                    "check LATCHKEY_KEYS_DIR and LATCHKEY_MANAGE_KEYS",
                )),
                Some(keys) if keys.is_empty() => out.push(finding(
                    Severity::Medium,
                    "live-jwks-empty",
                    "the JWKS publishes no key: no token can be verified",
                    "check LATCHKEY_KEYS_DIR and LATCHKEY_MANAGE_KEYS",
                )),
                Some(keys) => {
                    for key in keys {
                        out.extend(jwk_findings(key));
                    }
                }
            }
        }
    }
}

/// The response headers of `/`: HSTS, the security headers and CORS.
fn headers(_config: &Config, observed: &Observed, out: &mut Vec<Finding>) {
    match &observed.headers {
        Err(reason) => out.push(finding(
            Severity::High,
            "live-unreachable",
            format!("the security headers could not be checked: {reason}"),
            "check the --url and that the instance is up",
        )),
        Ok(headers) => {
            let https = observed.url.scheme() == "https";
            hsts(header(headers, "strict-transport-security"), https, out);
            security_headers(headers, out);
            cors(header(headers, "access-control-allow-origin"), out);
        }
    }
}

/// A header's value by its name, in any case.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Strict-Transport-Security: present on https://, with a max-age of 180 days or more.
fn hsts(value: Option<&str>, https: bool, out: &mut Vec<Finding>) {
    match (value, https) {
        (None, true) => out.push(finding(
            Severity::Medium,
            "live-hsts-missing",
            "no Strict-Transport-Security on an https:// instance",
            "unset LATCHKEY_HSTS or set it to true (on by default with an https:// issuer)",
        )),
        (None, false) => out.push(finding(
            Severity::Info,
            "live-hsts-missing",
            "no Strict-Transport-Security (expected: the instance is plain http)",
            "serve over https:// with LATCHKEY_ISSUER=https://...; HSTS then turns on",
        )),
        (Some(value), _) => {
            let max_age = value.split(';').find_map(|part| {
                part.trim()
                    .strip_prefix("max-age=")
                    .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
            });
            if max_age.unwrap_or(0) < 15_552_000 {
                out.push(finding(
                    Severity::Low,
                    "live-hsts-short",
                    format!("Strict-Transport-Security {value:?} has a max-age under 180 days"),
                    "check the ingress: Latchkey itself sends max-age=31536000",
                ));
            }
        }
    }
}

/// The headers Latchkey always sends, which a proxy might strip.
fn security_headers(headers: &[(String, String)], out: &mut Vec<Finding>) {
    let expected = [
        ("x-content-type-options", Some("nosniff")),
        ("x-frame-options", None),
        ("referrer-policy", None),
        ("content-security-policy", None),
    ];
    for (name, value) in expected {
        let actual = header(headers, name);
        let ok = match (actual, value) {
            (Some(actual), Some(value)) => actual.eq_ignore_ascii_case(value),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !ok {
            out.push(finding(
                Severity::Low,
                "live-header-missing",
                format!("{name} is missing or weak ({})", actual.unwrap_or("absent")),
                "check that no proxy strips Latchkey's security headers",
            ));
        }
    }
}

/// CORS answering a foreign origin: `*`, or the origin reflected.
fn cors(allow_origin: Option<&str>, out: &mut Vec<Finding>) {
    match allow_origin {
        Some("*") => out.push(finding(
            Severity::Medium,
            "live-cors-wildcard",
            "CORS allows any origin (Access-Control-Allow-Origin: *)",
            "list the exact origins in CORS_ORIGINS",
        )),
        Some(PROBE_ORIGIN) => out.push(finding(
            Severity::High,
            "live-cors-reflects-origin",
            format!("CORS lets the foreign origin {PROBE_ORIGIN} in"),
            "list the exact origins in CORS_ORIGINS and check the ingress",
        )),
        _ => {}
    }
}

fn jwk_findings(key: &Value) -> Vec<Finding> {
    let kid = key.get("kid").and_then(Value::as_str).unwrap_or("(no kid)");
    let kty = key.get("kty").and_then(Value::as_str).unwrap_or("");
    let mut out = Vec::new();
    let alg = key.get("alg").and_then(Value::as_str);
    let crv = key.get("crv").and_then(Value::as_str);
    match (kty, alg, crv) {
        ("RSA", ..) => {}
        // Fixed sizes: nothing more to judge.
        ("EC", Some("ES256"), Some("P-256")) | ("OKP", Some("EdDSA"), Some("Ed25519")) => {
            return out;
        }
        _ => {
            out.push(finding(
                Severity::Low,
                "live-key-type",
                format!(
                    "key {kid} has kty {kty:?}, alg {alg:?}, crv {crv:?}; Latchkey signs with RS256 (RSA), ES256 (EC P-256) or EdDSA (OKP Ed25519)"
                ),
                "remove the key from the signing_keys table",
            ));
            return out;
        }
    }
    if let Some(alg) = key.get("alg").and_then(Value::as_str)
        && alg != "RS256"
    {
        out.push(finding(
            Severity::Low,
            "live-key-alg",
            format!("key {kid} advertises alg {alg}"),
            "publish RSA keys as RS256 only",
        ));
    }
    match key.get("n").and_then(Value::as_str).and_then(modulus_bits) {
        None => out.push(finding(
            Severity::Low,
            "live-key-invalid",
            format!("key {kid} has no readable modulus n"),
            "remove the key from the signing_keys table",
        )),
        Some(bits) if bits < 2048 => out.push(finding(
            Severity::High,
            "live-key-size",
            format!("key {kid}: RSA {bits} bits (under 2048)"),
            "rotate to a key of 3072 bits (LATCHKEY_KEY_BITS or the SigningKey's keySize)",
        )),
        Some(bits) if bits < 3072 => out.push(finding(
            Severity::Info,
            "live-key-size-2048",
            format!("key {kid}: RSA {bits} bits"),
            "rotate to a 3072-bit key (LATCHKEY_KEY_BITS=3072 or the SigningKey's keySize) before 2030",
        )),
        Some(_) => {}
    }
    out
}

/// The size in bits of a base64url (unpadded) big-endian RSA modulus.
fn modulus_bits(n: &str) -> Option<usize> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    let leading = bytes[first].leading_zeros() as usize;
    Some((bytes.len() - first) * 8 - leading)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testing::*;
    use serde_json::json;

    fn secure_headers() -> Vec<(String, String)> {
        [
            ("strict-transport-security", "max-age=31536000"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("content-security-policy", "default-src 'none'"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn rsa_jwk(bits: usize) -> Value {
        use base64::Engine as _;
        let mut n = vec![0xff_u8; bits / 8];
        n[0] = 0x80;
        json!({
            "kty": "RSA", "alg": "RS256", "kid": format!("k{bits}"),
            "n": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&n), "e": "AQAB",
        })
    }

    fn observed(url: &str) -> Observed {
        Observed {
            url: Url::parse(url).expect("url"),
            discovery: Ok(json!({ "issuer": "https://auth.example.com" })),
            jwks: Ok(json!({ "keys": [rsa_jwk(3072)] })),
            headers: Ok(secure_headers()),
        }
    }

    #[test]
    fn a_secure_instance_is_clean() {
        let findings = audit_instance(&production(&[]), &observed("https://auth.example.com/"));
        assert_eq!(ids(&findings), Vec::<&str>::new(), "{findings:#?}");
    }

    #[test]
    fn instance_rules() {
        let config = production(&[]);
        let mut o = observed("http://auth.example.com");
        o.discovery = Ok(json!({ "issuer": "http://auth.example.com" }));
        o.jwks = Ok(json!({ "keys": [rsa_jwk(1024), rsa_jwk(2048), {"kty": "EC", "kid": "ec"}] }));
        o.headers = Ok(vec![
            ("access-control-allow-origin".into(), PROBE_ORIGIN.into()),
            ("x-content-type-options".into(), "sniff".into()),
        ]);
        let findings = audit_instance(&config, &o);
        let expect = [
            ("live-url-http", Severity::High),
            ("live-issuer-http", Severity::High),
            ("live-issuer-mismatch", Severity::Medium),
            ("live-key-size", Severity::High),
            ("live-key-size-2048", Severity::Info),
            ("live-key-type", Severity::Low),
            ("live-hsts-missing", Severity::Info),
            ("live-header-missing", Severity::Low),
            ("live-cors-reflects-origin", Severity::High),
        ];
        for (id, severity) in expect {
            assert_eq!(
                severity_of(&findings, id),
                Some(severity),
                "{id}: {findings:#?}"
            );
        }
        assert_eq!(
            findings
                .iter()
                .filter(|f| f.id == "live-header-missing")
                .count(),
            4,
            "{findings:#?}"
        );

        let mut https = observed("https://auth.example.com");
        https.headers = Ok(vec![
            ("access-control-allow-origin".into(), "*".into()),
            ("strict-transport-security".into(), "max-age=300".into()),
        ]);
        https.jwks = Ok(json!({ "keys": [] }));
        https.discovery = Err("GET ...: connection refused".into());
        let findings = audit_instance(&config, &https);
        assert_eq!(
            severity_of(&findings, "live-cors-wildcard"),
            Some(Severity::Medium)
        );
        assert_eq!(
            severity_of(&findings, "live-hsts-short"),
            Some(Severity::Low)
        );
        assert_eq!(
            severity_of(&findings, "live-jwks-empty"),
            Some(Severity::Medium)
        );
        assert_eq!(
            severity_of(&findings, "live-unreachable"),
            Some(Severity::High)
        );

        let mut no_hsts = observed("https://auth.example.com");
        no_hsts.headers = Ok(secure_headers()[1..].to_vec());
        assert_eq!(
            severity_of(&audit_instance(&config, &no_hsts), "live-hsts-missing"),
            Some(Severity::Medium)
        );
    }

    #[test]
    fn modulus_sizes() {
        for bits in [1024, 2048, 3072, 4096] {
            let jwk = rsa_jwk(bits);
            assert_eq!(
                modulus_bits(jwk["n"].as_str().expect("n")),
                Some(bits),
                "{bits}"
            );
        }
        // A leading zero byte (some encoders keep it) does not count.
        assert_eq!(modulus_bits("AIA"), Some(8));
        assert_eq!(modulus_bits("!!"), None);
    }
}
