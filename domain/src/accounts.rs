//! Accounts: what a valid username and address are, and the mails that prove an
//! address (activation) or reset a password. The rows are `latchkey_store::users`.

use latchkey_store::now_ms;
use latchkey_store::users::User;

use crate::Core;
use crate::email_tokens::{self, Purpose};
use crate::error::Result;
use crate::mail;

/// Adds a problem when `username` is not 3 to 64 letters, digits, `.`, `_` or `-`
/// starting with a letter or digit.
pub fn validate_username(username: &str, problems: &mut Vec<String>) {
    let username = username.trim();
    let ok_chars = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let starts_ok = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !(3..=64).contains(&username.len()) || !ok_chars || !starts_ok {
        problems.push(
            "username must be 3 to 64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
                .to_owned(),
        );
    }
}

/// Adds a problem when `email` is not an address like `name@example.com`.
pub fn validate_email(email: &str, problems: &mut Vec<String>) {
    let email = email.trim();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if !valid {
        problems.push("email must be an address like name@example.com".to_owned());
    }
}

/// Issues an activation token for `user` and mails the link, in the background; a
/// failure is logged.
pub fn send_verification(core: Core, user: User) {
    tokio::spawn(async move {
        if let Err(err) = mail_link(&core, &user, Purpose::VerifyEmail).await {
            crate::log_failure(&err);
        }
    });
}

/// Issues a single-use token for `purpose` (stored as a digest) and mails `user` the
/// link that carries it.
pub async fn mail_link(core: &Core, user: &User, purpose: Purpose) -> Result<()> {
    type Compose = fn(&str, &str, &str, &str, &str) -> mail::Mail;
    let (ttl, path, compose): (_, _, Compose) = match purpose {
        Purpose::VerifyEmail => (
            core.settings.email_verification_ttl,
            "/auth/verify-email",
            mail::verify_email,
        ),
        Purpose::PasswordReset => (
            core.settings.password_reset_ttl,
            "/auth/password-reset/confirm",
            mail::password_reset,
        ),
    };
    let now = now_ms();
    let token = email_tokens::issue(&core.db, &user.id, purpose, now, now + ttl_ms(ttl)).await?;
    let link = format!("{}{path}?token={token}", core.settings.issuer);
    core.mailer.spawn(compose(
        &user.id,
        &user.email,
        display_name(user),
        &link,
        &mail::describe(ttl),
    ));
    Ok(())
}

fn ttl_ms(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4)
}

fn display_name(user: &User) -> &str {
    if user.full_name.is_empty() {
        &user.username
    } else {
        &user.full_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(f: fn(&str, &mut Vec<String>), value: &str) -> usize {
        let mut out = Vec::new();
        f(value, &mut out);
        out.len()
    }

    #[test]
    fn usernames() {
        assert_eq!(problems(validate_username, "alice_01"), 0);
        assert_eq!(problems(validate_username, "al"), 1);
        assert_eq!(problems(validate_username, "_alice"), 1);
        assert_eq!(problems(validate_username, "ali ce"), 1);
        assert_eq!(problems(validate_username, "alice@example.com"), 1);
    }

    #[test]
    fn emails() {
        assert_eq!(problems(validate_email, "a@example.com"), 0);
        assert_eq!(problems(validate_email, "a@b@example.com"), 1);
        assert_eq!(problems(validate_email, "a@localhost"), 1);
        assert_eq!(problems(validate_email, "@example.com"), 1);
        assert_eq!(problems(validate_email, "a b@example.com"), 1);
    }
}
