//! `OAuthClientPolicy` (`latchkey.dev/v1alpha1`, cluster-scoped): what the `OAuthClient`s
//! of the namespaces it selects may ask for. Owned by cluster admins; a namespace editor
//! who may write `OAuthClient`s never gets more than the policies of their namespace allow.
//!
//! Every policy whose `namespaceSelector` selects a client's namespace applies, and the
//! client must comply with each of them (the intersection: adding a policy never widens
//! what a namespace may do). A namespace no policy selects gets the built-in defaults
//! (see the README's "Tenancy" section). The operator enforces this; the chart's
//! ValidatingAdmissionPolicy refuses a non-compliant `kubectl apply` of a client whose
//! namespace is selected by a policy.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::oauthclient::GrantType;

/// What the OAuthClients of the selected namespaces may use.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "OAuthClientPolicy",
    plural = "oauthclientpolicies",
    singular = "oauthclientpolicy",
    shortname = "oacp",
    category = "latchkey",
    derive = "PartialEq",
    doc = "What the OAuthClients of the namespaces a cluster admin selects may ask for: grants, scopes, redirect hosts, audiences, token lifetimes, first-party, resource-server and ServiceAccount use. Every policy selecting a namespace applies; with none, the built-in defaults do (no firstParty, no resourceServer, no ServiceAccount, https redirect URIs only, the deployment's allowed scopes).",
    printcolumn = r#"{"name":"First party","type":"boolean","jsonPath":".spec.allowFirstParty"}"#,
    printcolumn = r#"{"name":"Grants","type":"string","jsonPath":".spec.grantTypes","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientPolicySpec {
    /// The namespaces this policy governs, by their labels. `{}` selects every namespace;
    /// the label kubernetes.io/metadata.name (set on every namespace) selects one by name.
    pub namespace_selector: LabelSelector,

    /// The grant types a client may use. Unset: every grant an OAuthClient can ask for.
    /// (The password grant is never available through an OAuthClient.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub grant_types: Option<Vec<GrantType>>,

    /// The scopes a client may be given: exact scopes, or prefixes ending in "*"
    /// ("invoices:*" matches "invoices:read"; "*" matches every scope). Unset: every scope
    /// the deployment allows (LATCHKEY_ALLOWED_SCOPES), which applies in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    #[x_kube(
        validation = Rule::new("self.all(p, p.matches('^[!#-)+-\\\\[\\\\]-~]*\\\\*?$'))")
            .message("scope patterns are RFC 6749 scope tokens, optionally ending in one * (a prefix match)"),
    )]
    pub scopes: Option<Vec<String>>,

    /// The hosts https:// redirect URIs and post-logout redirect URIs may point at:
    /// host names ("app.example.com") or "*." and a domain ("*.example.com": every host
    /// below example.com, not example.com itself). Lower case; compared case-insensitively.
    /// Unset: any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    #[x_kube(
        validation = Rule::new("self.all(h, h.matches('^(\\\\*\\\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))")
            .message("redirect host patterns are lower-case host names, optionally starting with *. (every host below that domain)"),
    )]
    pub redirect_hosts: Option<Vec<String>>,

    /// Whether redirect URIs may be http:// URIs on a loopback address (127.0.0.1, [::1],
    /// localhost; RFC 8252 section 7.3, for native apps). They are refused by default: a
    /// client in a cluster is a web application.
    #[serde(default)]
    pub allow_loopback_redirects: bool,

    /// The values a client's spec.audience may take. Unset: any. A client that sets none
    /// gets the deployment's default audience (LATCHKEY_AUDIENCE), which is always allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 512)))]
    pub audiences: Option<Vec<String>>,

    /// The longest accessTokenTTL a client may set, in the same format (seconds, or a
    /// number with a unit s, m, h or d). Unset: the CRD's own bound (24h). A client that
    /// sets none gets the service's default (OAUTH2_ACCESS_TOKEN_EXPIRES), which the
    /// cluster admin configures.
    #[serde(
        default,
        rename = "maxAccessTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(pattern(r"^[0-9]{1,9}[smhd]?$"))]
    pub max_access_token_ttl: Option<String>,

    /// The longest refreshTokenTTL a client may set, like maxAccessTokenTTL. Unset: the
    /// CRD's own bound (365d).
    #[serde(
        default,
        rename = "maxRefreshTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(pattern(r"^[0-9]{1,9}[smhd]?$"))]
    pub max_refresh_token_ttl: Option<String>,

    /// Whether a client may be firstParty (its users are never asked for consent). Only
    /// for namespaces whose every editor the deployment's owner trusts with all users'
    /// sign-ins.
    #[serde(default)]
    pub allow_first_party: bool,

    /// Whether a client may be a resourceServer (it may introspect every access token,
    /// not only its own and those naming it as audience).
    #[serde(default)]
    pub allow_resource_server: bool,

    /// Whether a client may authenticate with a Kubernetes ServiceAccount token
    /// (spec.serviceAccount) instead of a secret. Default true: the ServiceAccount is
    /// always one of the client's own namespace, so it grants nothing a namespace editor
    /// does not already hold, and it needs no secret at all.
    #[serde(default = "default_true")]
    pub allow_service_account: bool,
}

fn default_true() -> bool {
    true
}
