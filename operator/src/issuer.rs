//! Publishes the cluster's ServiceAccount issuer and its public keys to the database, so
//! the service (which has no Kubernetes access) can verify projected ServiceAccount
//! tokens (workload identity, `OAuthClient.spec.serviceAccount`).
//!
//! Both documents come from the API server itself — `/.well-known/openid-configuration`
//! for the issuer and `/openid/v1/jwks` for the keys — which every API server serves
//! whatever its issuer URL is, so clusters whose issuer is an external URL (managed
//! clusters) work the same. Read every `LATCHKEY_CLUSTER_ISSUER_REFRESH` by the leader; a
//! write happens only when something changed, and its notification makes every replica
//! reload at once.

use std::sync::Arc;
use std::time::Duration;

use latchkey_store::{federation, jwks};
use serde::Deserialize;
use serde_json::Value;

use crate::context::Context;

/// The most keys taken from the cluster's set.
const MAX_KEYS: usize = 32;

/// Refreshes until `stop` resolves; failures are logged and retried at the next tick
/// (the last published keys stay in effect).
pub async fn run(ctx: Arc<Context>, every: Duration, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut stop => return,
        }
        let result = refresh(&ctx).await;
        metrics::counter!(
            "latchkey_operator_cluster_issuer_refreshes_total",
            "result" => if result.is_ok() { "ok" } else { "error" }
        )
        .increment(1);
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot read the cluster's ServiceAccount issuer; keeping the published keys");
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
}

/// One read and, if anything changed, one write.
pub async fn refresh(ctx: &Context) -> Result<(), String> {
    let get = |path: &'static str| async move {
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        ctx.client
            .request_text(request)
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    };
    let discovery: Discovery =
        serde_json::from_str(&get("/.well-known/openid-configuration").await?)
            .map_err(|e| format!("the API server's openid-configuration: {e}"))?;
    let set: Value = serde_json::from_str(&get("/openid/v1/jwks").await?)
        .map_err(|e| format!("the API server's JWKS: {e}"))?;
    let keys = usable_keys(&set);
    if keys.is_empty() {
        return Err("the API server's JWKS holds no usable key".to_owned());
    }
    let text = serde_json::json!({ "keys": keys }).to_string();
    let changed = federation::put(
        &ctx.db,
        federation::KUBERNETES,
        &discovery.issuer,
        &text,
        latchkey_store::now_ms(),
    )
    .await
    .map_err(|e| e.to_string())?;
    if changed {
        tracing::info!(
            issuer = discovery.issuer,
            keys = keys.len(),
            "published the cluster's ServiceAccount keys"
        );
    }
    Ok(())
}

/// The keys of `set` that [`jwks::check`] accepts on their own (an unusable key is
/// skipped and logged, so it cannot take the others down).
fn usable_keys(set: &Value) -> Vec<Value> {
    let Some(keys) = set.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter(
            |key| match jwks::check(&serde_json::json!({ "keys": [key] }), 1) {
                Ok(_) => true,
                Err(e) => {
                    let kid = key.get("kid").and_then(|k| k.as_str());
                    tracing::warn!(error = %e, kid, "skipping a ServiceAccount key");
                    false
                }
            },
        )
        .take(MAX_KEYS)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_usable_keys_are_kept() {
        let rsa = serde_json::json!({"kty":"RSA","kid":"a","alg":"RS256","use":"sig",
            "n": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xc1u8; 256]),
            "e":"AQAB"});
        let set = serde_json::json!({"keys":[rsa, {"kty":"oct","k":"c2VjcmV0"}]});
        assert_eq!(usable_keys(&set), vec![set["keys"][0].clone()]);
        assert!(usable_keys(&serde_json::json!({})).is_empty());
    }
}
