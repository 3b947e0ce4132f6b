//! Sessions: refresh-token families over `latchkey_store::refresh_tokens`.

use latchkey_store::Db;
use latchkey_store::refresh_tokens::{self, Rotation};

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
        let revoked = refresh_tokens::revoke_family(db, family_id, now).await?;
        tracing::warn!(family_id, revoked, "refresh token reused; family revoked");
        metrics::counter!("latchkey_refresh_reuse_total").increment(1);
    }
    Ok(rotation)
}
