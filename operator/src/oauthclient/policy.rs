//! Tenancy: which `OAuthClientPolicy`s govern a client's namespace, and whether the client
//! complies with them. Pure functions of the policies, the namespace's labels and what
//! the client asks for; unit-tested without a cluster.
//!
//! # How policies combine
//! Every policy whose `namespaceSelector` selects the namespace applies, and the client
//! must comply with each one: the intersection. Adding a policy can only narrow what a
//! namespace may do, never widen it, so a broad policy written by one admin cannot be
//! undone by a narrow one written by another, and the chart's ValidatingAdmissionPolicy
//! (which evaluates each policy on its own) decides exactly like this module. A
//! namespace no policy selects gets [`Rules::defaults`].
//!
//! The messages name the rule as `OAuthClientPolicy <name>: <field> ...`, the same words
//! the ValidatingAdmissionPolicy uses, so `kubectl apply`, the Ready condition and the
//! Event read alike.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use latchkey_crds::{OAuthClientPolicy, OAuthClientSpec, duration};
use latchkey_store::clients::ClientRecord;
use latchkey_store::protocol::GrantType;

/// What a client asks for, the same whether read from its spec or from the row the
/// operator wrote for it earlier (the configuration in effect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub first_party: bool,
    pub resource_server: bool,
    pub audience: Option<String>,
    /// Seconds; `None` when the client uses the service's default.
    pub access_token_ttl: Option<u64>,
    pub refresh_token_ttl: Option<u64>,
    /// Whether the client authenticates with a Kubernetes ServiceAccount token
    /// (`spec.serviceAccount`); checked against `allowServiceAccount`.
    pub uses_service_account: bool,
}

impl Subject {
    /// What `spec` asks for. A lifetime that does not parse counts as unset here: the
    /// spec's validation reports it.
    pub fn from_spec(spec: &OAuthClientSpec) -> Self {
        let ttl = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| duration::parse(s).ok())
                .map(|d| d.as_secs())
        };
        Self {
            grant_types: spec.grant_types.iter().map(|g| (*g).into()).collect(),
            scopes: spec.scopes.clone(),
            redirect_uris: spec.redirect_uris.clone(),
            post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
            first_party: spec.first_party,
            resource_server: spec.resource_server,
            audience: spec.audience.clone(),
            access_token_ttl: ttl(&spec.access_token_ttl),
            refresh_token_ttl: ttl(&spec.refresh_token_ttl),
            uses_service_account: spec.service_account.is_some(),
        }
    }

    /// What the stored `row` grants.
    pub fn from_row(row: &ClientRecord) -> Self {
        let secs = |v: Option<i64>| v.and_then(|s| u64::try_from(s).ok());
        Self {
            grant_types: row.grant_types.clone(),
            scopes: row.scopes.clone(),
            redirect_uris: row.redirect_uris.clone(),
            post_logout_redirect_uris: row.post_logout_redirect_uris.clone(),
            first_party: row.first_party,
            resource_server: row.resource_server,
            audience: row.audience.clone(),
            access_token_ttl: secs(row.access_token_ttl),
            refresh_token_ttl: secs(row.refresh_token_ttl),
            uses_service_account: row.service_account.is_some(),
        }
    }
}

/// One broken rule: where it comes from, the policy field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The policy's name; `None` for the built-in defaults.
    pub policy: Option<String>,
    /// The policy field that refuses it (`allowFirstParty`, `scopes`, ...).
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            Some(name) => write!(f, "OAuthClientPolicy {name}: {}", self.message),
            None => write!(
                f,
                "the built-in defaults (no OAuthClientPolicy selects this namespace): {}",
                self.message
            ),
        }
    }
}

/// A policy's rules, or the defaults, in one shape so that one function checks both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `None` for the defaults.
    pub name: Option<String>,
    pub grant_types: Option<Vec<GrantType>>,
    pub scopes: Option<Vec<String>>,
    pub redirect_hosts: Option<Vec<String>>,
    pub allow_loopback_redirects: bool,
    pub audiences: Option<Vec<String>>,
    pub max_access_token_ttl: Option<Duration>,
    pub max_refresh_token_ttl: Option<Duration>,
    pub allow_first_party: bool,
    pub allow_resource_server: bool,
    pub allow_service_account: bool,
}

impl Rules {
    /// What a namespace no policy selects may do: no firstParty, no resourceServer,
    /// ServiceAccount tokens of its own namespace, https:// redirect URIs only (no loopback), any grant, host,
    /// audience and lifetime the CRD admits, and the scopes the deployment allows
    /// (LATCHKEY_ALLOWED_SCOPES, checked for every client in any case).
    pub fn defaults() -> Self {
        Self {
            name: None,
            grant_types: None,
            scopes: None,
            redirect_hosts: None,
            allow_loopback_redirects: false,
            audiences: None,
            max_access_token_ttl: None,
            max_refresh_token_ttl: None,
            allow_first_party: false,
            allow_resource_server: false,
            allow_service_account: true,
        }
    }

    /// The rules of `policy`. A maximum lifetime that does not parse (the schema's
    /// pattern admits only what parses, short of overflow) is zero: nothing passes it.
    pub fn of(policy: &OAuthClientPolicy) -> Self {
        let spec = &policy.spec;
        let max = |v: &Option<String>| {
            v.as_deref()
                .map(|s| duration::parse(s).unwrap_or(Duration::ZERO))
        };
        Self {
            name: Some(policy.name_any()),
            grant_types: spec
                .grant_types
                .as_ref()
                .map(|g| g.iter().map(|g| (*g).into()).collect()),
            scopes: spec.scopes.clone(),
            redirect_hosts: spec.redirect_hosts.clone(),
            allow_loopback_redirects: spec.allow_loopback_redirects,
            audiences: spec.audiences.clone(),
            max_access_token_ttl: max(&spec.max_access_token_ttl),
            max_refresh_token_ttl: max(&spec.max_refresh_token_ttl),
            allow_first_party: spec.allow_first_party,
            allow_resource_server: spec.allow_resource_server,
            allow_service_account: spec.allow_service_account,
        }
    }
}

/// The rules that govern a namespace with `labels`: those of every policy selecting it,
/// or the defaults when none does. Sorted by policy name, so messages are stable.
pub fn governing(policies: &[OAuthClientPolicy], labels: &BTreeMap<String, String>) -> Vec<Rules> {
    let mut rules: Vec<Rules> = policies
        .iter()
        .filter(|p| selects(&p.spec.namespace_selector, labels))
        .map(Rules::of)
        .collect();
    if rules.is_empty() {
        rules.push(Rules::defaults());
    }
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    rules
}

/// Every rule of every governing policy that `subject` breaks.
pub fn check(subject: &Subject, governing: &[Rules]) -> Vec<Violation> {
    governing
        .iter()
        .flat_map(|r| check_one(subject, r))
        .collect()
}

/// Whether a client using a ServiceAccount token may do so under `governing`: the
/// `allowServiceAccount` rule on its own, for callers that have only that answer.
pub fn check_service_account(uses_service_account: bool, governing: &[Rules]) -> Vec<Violation> {
    governing
        .iter()
        .filter(|r| uses_service_account && !r.allow_service_account)
        .map(|r| violation(r, "allowServiceAccount", service_account_message()))
        .collect()
}

fn service_account_message() -> String {
    "allowServiceAccount is false: clients may not authenticate with a ServiceAccount token (serviceAccount)".to_owned()
}

fn violation(rules: &Rules, field: &'static str, message: String) -> Violation {
    Violation {
        policy: rules.name.clone(),
        field,
        message,
    }
}

fn check_one(s: &Subject, r: &Rules) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut refuse = |field, message| out.push(violation(r, field, message));
    if let Some(allowed) = &r.grant_types {
        let refused: Vec<&str> = s
            .grant_types
            .iter()
            .filter(|g| !allowed.contains(g))
            .map(|g| g.as_str())
            .collect();
        if !refused.is_empty() {
            refuse(
                "grantTypes",
                format!("grantTypes does not allow {}", refused.join(", ")),
            );
        }
    }
    if let Some(patterns) = &r.scopes {
        let refused: Vec<&str> = s
            .scopes
            .iter()
            .filter(|scope| !patterns.iter().any(|p| scope_matches(p, scope)))
            .map(String::as_str)
            .collect();
        if !refused.is_empty() {
            refuse(
                "scopes",
                format!("scopes does not allow {}", refused.join(", ")),
            );
        }
    }
    let uris = || s.redirect_uris.iter().chain(&s.post_logout_redirect_uris);
    if !r.allow_loopback_redirects {
        let loopback: Vec<&str> = uris()
            .filter(|u| u.starts_with("http://"))
            .map(String::as_str)
            .collect();
        if !loopback.is_empty() {
            refuse(
                "allowLoopbackRedirects",
                format!(
                    "allowLoopbackRedirects is false: only https:// redirect URIs are allowed, not {}",
                    loopback.join(", ")
                ),
            );
        }
    }
    if let Some(patterns) = &r.redirect_hosts {
        let refused: Vec<&str> = uris()
            .filter(|u| u.starts_with("https://"))
            .filter(|u| !patterns.iter().any(|p| host_matches(p, &host_of(u))))
            .map(String::as_str)
            .collect();
        if !refused.is_empty() {
            refuse(
                "redirectHosts",
                format!("redirectHosts does not allow {}", refused.join(", ")),
            );
        }
    }
    if let (Some(allowed), Some(audience)) = (&r.audiences, &s.audience)
        && !allowed.contains(audience)
    {
        refuse("audiences", format!("audiences does not allow {audience}"));
    }
    let mut ttl = |field, name: &str, value: Option<u64>, max: Option<Duration>| {
        if let (Some(v), Some(max)) = (value, max)
            && v > max.as_secs()
        {
            refuse(
                field,
                format!(
                    "{name} {} is longer than {field} {}",
                    duration::format(Duration::from_secs(v)),
                    duration::format(max)
                ),
            );
        }
    };
    ttl(
        "maxAccessTokenTTL",
        "accessTokenTTL",
        s.access_token_ttl,
        r.max_access_token_ttl,
    );
    ttl(
        "maxRefreshTokenTTL",
        "refreshTokenTTL",
        s.refresh_token_ttl,
        r.max_refresh_token_ttl,
    );
    if s.first_party && !r.allow_first_party {
        refuse(
            "allowFirstParty",
            "allowFirstParty is false: firstParty clients (no consent page) are not allowed"
                .to_owned(),
        );
    }
    if s.resource_server && !r.allow_resource_server {
        refuse(
            "allowResourceServer",
            "allowResourceServer is false: resourceServer clients (introspecting every token) are not allowed"
                .to_owned(),
        );
    }
    if s.uses_service_account && !r.allow_service_account {
        refuse("allowServiceAccount", service_account_message());
    }
    out
}

/// `invoices:*` matches every scope starting with `invoices:`; `*` every scope; anything
/// else only itself.
pub fn scope_matches(pattern: &str, scope: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => scope.starts_with(prefix),
        None => pattern == scope,
    }
}

/// `*.example.com` matches every host below example.com (not example.com itself);
/// anything else only itself. Case-insensitive.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') => host.ends_with(suffix),
        _ => pattern == host,
    }
}

/// The host of an `https://` or `http://` URI (the CRD admits no user information), in
/// lower case, without brackets or port: what CEL's `url(u).getHostname()` returns.
pub fn host_of(uri: &str) -> String {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .unwrap_or(uri);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.to_ascii_lowercase()
}

/// Whether `selector` selects an object with `labels` (Kubernetes semantics: every
/// matchLabels pair and every matchExpressions requirement must hold; `{}` selects all).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let requirements = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator the API server would have refused: selects nothing.
            _ => false,
        }
    });
    pairs && requirements
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use latchkey_crds::{GrantType as CrdGrant, OAuthClientPolicySpec};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn policy(name: &str, selector: LabelSelector) -> OAuthClientPolicy {
        OAuthClientPolicy::new(
            name,
            OAuthClientPolicySpec {
                namespace_selector: selector,
                grant_types: None,
                scopes: None,
                redirect_hosts: None,
                allow_loopback_redirects: false,
                audiences: None,
                max_access_token_ttl: None,
                max_refresh_token_ttl: None,
                allow_first_party: false,
                allow_resource_server: false,
                allow_service_account: false,
            },
        )
    }

    fn team(value: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(&[("team", value)])),
            match_expressions: None,
        }
    }

    fn subject() -> Subject {
        Subject {
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec!["openid".into(), "invoices:read".into()],
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: vec![],
            first_party: false,
            resource_server: false,
            audience: None,
            access_token_ttl: Some(900),
            refresh_token_ttl: None,
            uses_service_account: false,
        }
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        let ns = labels(&[("team", "a"), ("env", "prod")]);
        assert!(selects(&LabelSelector::default(), &ns), "{{}} selects all");
        assert!(selects(&team("a"), &ns));
        assert!(!selects(&team("b"), &ns));
        let expr = |key: &str, op: &str, values: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
        };
        assert!(selects(&expr("env", "In", &["prod", "stage"]), &ns));
        assert!(!selects(&expr("env", "NotIn", &["prod"]), &ns));
        assert!(selects(&expr("zone", "NotIn", &["x"]), &ns));
        assert!(selects(&expr("team", "Exists", &[]), &ns));
        assert!(!selects(&expr("team", "DoesNotExist", &[]), &ns));
        assert!(!selects(&expr("team", "Bogus", &[]), &ns));
    }

    #[test]
    fn defaults_refuse_first_party_resource_servers_and_loopback() {
        let rules = governing(&[policy("other", team("b"))], &labels(&[("team", "a")]));
        assert_eq!(rules, vec![Rules::defaults()]);
        assert_eq!(check(&subject(), &rules), vec![]);
        let mut s = subject();
        s.first_party = true;
        s.resource_server = true;
        s.uses_service_account = true;
        s.redirect_uris.push("http://127.0.0.1:8400/cb".into());
        let fields: Vec<&str> = check(&s, &rules).iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "allowLoopbackRedirects",
                "allowFirstParty",
                "allowResourceServer",
            ]
        );
        let text = check(&s, &rules)[1].to_string();
        assert!(text.starts_with("the built-in defaults"), "{text}");
    }

    #[test]
    fn every_rule_names_its_policy_and_field() {
        let mut p = policy("tenants", LabelSelector::default());
        p.spec.grant_types = Some(vec![CrdGrant::ClientCredentials]);
        p.spec.scopes = Some(vec!["invoices:*".into()]);
        p.spec.redirect_hosts = Some(vec!["*.example.org".into()]);
        p.spec.audiences = Some(vec!["https://api.example.org".into()]);
        p.spec.max_access_token_ttl = Some("10m".into());
        p.spec.max_refresh_token_ttl = Some("1d".into());
        let rules = governing(&[p], &labels(&[]));
        let mut s = subject();
        s.audience = Some("https://other.example".into());
        s.refresh_token_ttl = Some(2 * 86_400);
        s.post_logout_redirect_uris = vec!["https://bye.example.org/x".into()];
        let found = check(&s, &rules);
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "OAuthClientPolicy tenants: grantTypes does not allow authorization_code, refresh_token",
                "OAuthClientPolicy tenants: scopes does not allow openid",
                "OAuthClientPolicy tenants: redirectHosts does not allow https://app.example.com/cb",
                "OAuthClientPolicy tenants: audiences does not allow https://other.example",
                "OAuthClientPolicy tenants: accessTokenTTL 15m is longer than maxAccessTokenTTL 10m",
                "OAuthClientPolicy tenants: refreshTokenTTL 2d is longer than maxRefreshTokenTTL 1d",
            ]
        );
    }

    #[test]
    fn every_selecting_policy_applies() {
        let mut loose = policy("a-loose", LabelSelector::default());
        loose.spec.allow_first_party = true;
        let strict = policy("b-strict", team("a"));
        let mut s = subject();
        s.first_party = true;
        // Both select team a: the strict one still refuses.
        let rules = governing(&[strict.clone(), loose.clone()], &labels(&[("team", "a")]));
        assert_eq!(rules.len(), 2);
        let found = check(&s, &rules);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].policy.as_deref(), Some("b-strict"));
        assert_eq!(found[0].field, "allowFirstParty");
        // Only the loose one selects team b.
        let rules = governing(&[strict, loose], &labels(&[("team", "b")]));
        assert_eq!(check(&s, &rules), vec![]);
    }

    #[test]
    fn patterns() {
        assert!(scope_matches("invoices:*", "invoices:read"));
        assert!(scope_matches("invoices:*", "invoices:"));
        assert!(!scope_matches("invoices:*", "invoice"));
        assert!(scope_matches("*", "anything"));
        assert!(scope_matches("openid", "openid"));
        assert!(!scope_matches("openid", "openid2"));
        assert!(host_matches("*.example.com", "app.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(host_matches("*.example.com", "APP.Example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
        assert!(host_matches("app.example.com", "app.example.com"));
        assert!(!host_matches("app.example.com", "app.example.com.evil"));
        assert_eq!(
            host_of("https://App.Example.com:8443/cb?x=1"),
            "app.example.com"
        );
        assert_eq!(host_of("https://app.example.com?x"), "app.example.com");
        assert_eq!(host_of("http://[::1]:80/cb"), "::1");
        assert_eq!(host_of("http://127.0.0.1/cb"), "127.0.0.1");
    }

    #[test]
    fn the_service_account_rule_stands_alone_too() {
        // The defaults allow a ServiceAccount of the client's own namespace.
        let rules = vec![Rules::defaults()];
        assert_eq!(check_service_account(false, &rules), vec![]);
        assert_eq!(check_service_account(true, &rules), vec![]);
        let mut forbidding = policy("sa", LabelSelector::default());
        forbidding.spec.allow_service_account = false;
        let found = check_service_account(true, &[Rules::of(&forbidding)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "allowServiceAccount");
    }

    #[test]
    fn a_row_is_checked_like_a_spec() {
        let row = ClientRecord {
            client_id: "ns.x".into(),
            name: "x".into(),
            secret_hash: None,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            public: false,
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            scopes: vec![],
            token_endpoint_auth_method: latchkey_store::protocol::AuthMethod::ClientSecretBasic,
            first_party: true,
            admin: false,
            resource_server: false,
            access_token_ttl: Some(60),
            refresh_token_ttl: None,
            audience: None,
            jwks: None,
            service_account: None,
            managed_by: latchkey_store::clients::ManagedBy::Operator,
            owner: Some("ns/x".into()),
            disabled: false,
            created_at: 0,
            updated_at: 0,
        };
        let s = Subject::from_row(&row);
        assert!(s.first_party);
        assert_eq!(s.access_token_ttl, Some(60));
        let found = check(&s, &[Rules::defaults()]);
        assert_eq!(found[0].field, "allowFirstParty");
    }
}
