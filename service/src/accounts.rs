//! Accounts and refresh-token families: the rules over the queries in
//! `latchkey_store::{users, refresh_tokens}`.

pub use latchkey_store::refresh_tokens::{
    NewRefresh, Rotation, family as refresh_family, insert as insert_refresh,
    live_scope as refresh_scope, revoke_family,
};
pub use latchkey_store::users::{
    User, change_password, find_by_id, find_by_login, insert as create_user, normalize,
};
use latchkey_store::{Db, refresh_tokens};

use crate::error::Result;

/// Consumes a refresh token and stores its successor (see
/// [`latchkey_store::refresh_tokens::rotate`]). Presenting an already-used token revokes
/// its whole family: the legitimate holder and the thief both lose the session.
pub async fn rotate_refresh(
    db: &Db,
    client_id: &str,
    old_hash: &str,
    new_hash: &str,
    new_expires_at: i64,
    now: i64,
) -> Result<Rotation> {
    let rotation =
        refresh_tokens::rotate(db, client_id, old_hash, new_hash, new_expires_at, now).await?;
    if let Rotation::Reused { family_id } = &rotation {
        let revoked = revoke_family(db, family_id, now).await?;
        tracing::warn!(family_id, revoked, "refresh token reused; family revoked");
        metrics::counter!("latchkey_refresh_reuse_total").increment(1);
    }
    Ok(rotation)
}
