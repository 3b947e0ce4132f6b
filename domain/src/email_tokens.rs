//! Single-use tokens sent by email (account activation, password reset): the token goes
//! into the mail, its digest into `latchkey_store::email_tokens`.

use latchkey_store::Db;
use latchkey_store::email_tokens;
pub use latchkey_store::email_tokens::Purpose;

use crate::error::Result;
use crate::tokens::{digest, random_token};

/// Creates a token for `user_id` valid until `expires_at`; returns the token (for the
/// link). Earlier unused tokens of the same purpose stay valid until they expire.
pub async fn issue(
    db: &Db,
    user_id: &str,
    purpose: Purpose,
    now: i64,
    expires_at: i64,
) -> Result<String> {
    let token = random_token(32)?;
    email_tokens::insert(db, &digest(&token), user_id, purpose, now, expires_at).await?;
    Ok(token)
}

/// The user of a live (unused, unexpired) token, without spending it.
pub async fn peek(db: &Db, token: &str, purpose: Purpose, now: i64) -> Result<Option<String>> {
    Ok(email_tokens::peek(db, &digest(token), purpose, now).await?)
}

/// Spends an activation token and marks the address verified; returns its user.
pub async fn verify_email(db: &Db, token: &str, now: i64) -> Result<Option<String>> {
    Ok(email_tokens::verify_email(db, &digest(token), now).await?)
}

/// Spends a reset token of `user_id` and sets the new password hash (see
/// [`latchkey_store::credentials::reset_password`]).
pub async fn reset_password(
    db: &Db,
    token: &str,
    user_id: &str,
    password_hash: &str,
    now: i64,
) -> Result<Option<u64>> {
    Ok(
        latchkey_store::credentials::reset_password(
            db,
            &digest(token),
            user_id,
            password_hash,
            now,
        )
        .await?,
    )
}
