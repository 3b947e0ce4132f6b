//! Sessions: refresh-token families. One flow for `/auth/refresh` and the
//! `refresh_token` grant alike: [`start`] a family at sign-in, [`rotate`] it on every
//! refresh (a reused token revokes the whole family), [`revoke`] it at logout or when
//! what it came from was replayed.
//!
//! Revoking a family also revokes every access token issued from it (their `sid` is the
//! family id), until the longest of them has expired (RFC 7009 §2.1). The family id is
//! fixed before any token of it exists (an authorization code carries it), so a token
//! issued by a racing redemption is covered as well.

use std::time::Duration;

use latchkey_store::clients;
use latchkey_store::refresh_tokens::{self, NewRefresh, Rotation};
use latchkey_store::users::{self, User};

use crate::Core;
use crate::error::{Error, Result};
use crate::scopes;
use crate::tokens::{digest, random_token};

/// Longest refresh token looked up (ours are 43 characters).
const MAX_TOKEN_LEN: usize = 512;

/// A session to start: the first refresh token of family `family_id`.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub family_id: &'a str,
    /// The client's own refresh-token lifetime; `None` takes the service's.
    pub refresh_ttl: Option<Duration>,
}

/// Stores the first refresh token of a session; returns the token (only its digest is
/// kept).
pub async fn start(core: &Core, session: &NewSession<'_>, now: i64) -> Result<String> {
    let token = random_token(32)?;
    refresh_tokens::insert(
        &core.db,
        &NewRefresh {
            token_hash: &digest(&token),
            family_id: session.family_id,
            user_id: session.user_id,
            client_id: session.client_id,
            scope: session.scope,
            expires_at: expiry(core, session.refresh_ttl, now),
        },
        now,
    )
    .await?;
    metrics::counter!("latchkey_tokens_issued_total", "kind" => "refresh").increment(1);
    Ok(token)
}

/// When a refresh token issued `now` expires.
fn expiry(core: &Core, ttl: Option<Duration>, now: i64) -> i64 {
    let ttl = ttl.unwrap_or(core.settings.refresh_ttl);
    now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4)
}

/// A refresh that went through: the successor token and whom it is for.
#[derive(Debug)]
pub struct Rotated {
    pub refresh_token: String,
    pub family_id: String,
    pub user: User,
    /// The scope for the new access token: the requested one (never wider than the
    /// session's), or the session's.
    pub scope: String,
}

/// Rotates the refresh token `presented` of `client_id`: consumes it and stores its
/// successor. The scope may narrow for the new access token (`requested`), never widen;
/// the successor keeps the session's scope. Narrowing is checked before consuming, so a
/// bad scope does not burn a live token.
///
/// Presenting an already-used token revokes its whole family: the legitimate holder
/// and the thief both lose the session. A session whose user is gone or disabled is
/// revoked too ([`Error::AccountInactive`]).
pub async fn rotate(
    core: &Core,
    client_id: &str,
    presented: &str,
    requested: Option<&str>,
    refresh_ttl: Option<Duration>,
    now: i64,
) -> Result<Rotated> {
    if presented.is_empty() || presented.len() > MAX_TOKEN_LEN {
        return Err(Error::InvalidGrant("the refresh token is invalid"));
    }
    let old_hash = digest(presented);
    // An unknown or used token goes on to `rotate`, which detects reuse.
    if let Some(requested) = requested
        && let Some(original) = refresh_tokens::live_scope(&core.db, &old_hash, client_id).await?
    {
        let original: Vec<String> = original.split(' ').map(str::to_owned).collect();
        scopes::resolve(Some(requested), &original)?;
    }
    let successor = random_token(32)?;
    let rotation = refresh_tokens::rotate(
        &core.db,
        client_id,
        &old_hash,
        &digest(&successor),
        expiry(core, refresh_ttl, now),
        now,
    )
    .await?;
    let (family_id, user_id, original_scope) = match rotation {
        Rotation::Rotated {
            family_id,
            user_id,
            scope,
            ..
        } => (family_id, user_id, scope),
        Rotation::Reused { family_id } => {
            let revoked = revoke_family(core, &family_id, client_id, now).await?;
            tracing::warn!(family_id, revoked, "refresh token reused; family revoked");
            metrics::counter!("latchkey_refresh_reuse_total").increment(1);
            return Err(Error::InvalidGrant(
                "the refresh token was already used; the session has been revoked",
            ));
        }
        Rotation::Invalid => {
            return Err(Error::InvalidGrant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
    };
    let original: Vec<String> = original_scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let scope = scopes::resolve(requested, &original)?;
    let user = users::find_by_id(&core.db, &user_id)
        .await?
        .filter(|u| u.is_active);
    let Some(user) = user else {
        revoke_family(core, &family_id, client_id, now).await?;
        return Err(Error::AccountInactive);
    };
    metrics::counter!("latchkey_tokens_issued_total", "kind" => "refresh").increment(1);
    Ok(Rotated {
        refresh_token: successor,
        family_id,
        user,
        scope,
    })
}

/// Ends a session of `client_id`: the access token `access` (its `jti` and expiry in ms)
/// is revoked until it expires, and the family `family_id`: its refresh tokens and every
/// access token issued from it.
pub async fn revoke(
    core: &Core,
    access: Option<(&str, i64)>,
    family_id: Option<&str>,
    client_id: &str,
    now: i64,
) -> Result<()> {
    if let Some((jti, expires_at_ms)) = access {
        core.ephemeral.revoke_jti(jti, expires_at_ms, now).await?;
    }
    if let Some(family_id) = family_id {
        revoke_family(core, family_id, client_id, now).await?;
    }
    Ok(())
}

/// Revokes the family's access tokens (by `sid`, for as long as one of `client_id`'s can
/// live), then its refresh tokens; returns how many refresh tokens were revoked. The
/// access tokens go first: if the database step fails, nothing issued from the family
/// is left usable.
async fn revoke_family(core: &Core, family_id: &str, client_id: &str, now: i64) -> Result<u64> {
    let lifetime = access_lifetime(core, client_id).await?;
    let until = now.saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 4));
    core.ephemeral.revoke_session(family_id, until, now).await?;
    Ok(refresh_tokens::revoke_family(&core.db, family_id, now).await?)
}

/// The longest an access token of `client_id` lives: its own setting, or the service's
/// (also for the first-party API, which has no client row).
async fn access_lifetime(core: &Core, client_id: &str) -> Result<Duration> {
    let own = clients::get(&core.db, client_id)
        .await?
        .and_then(|c| c.access_token_ttl)
        .and_then(|secs| u64::try_from(secs).ok())
        .map(Duration::from_secs);
    Ok(own.unwrap_or(core.tokens.ttl()).max(core.tokens.ttl()))
}
