//! Outgoing mail: account-activation and password-reset messages, and where they go.
//!
//! With `SMTP_URL` set, mail is sent through that server (STARTTLS or implicit TLS with
//! rustls); without it (the embedded default) each message is written to
//! `<data dir>/outbox/` as an `.eml` file. Either way delivery runs off the request path
//! ([`Mailer::spawn`]): a slow or broken mail server is logged, never a failed request.
//!
//! Log lines name the kind of mail, the user and (for the outbox) the file, never the
//! recipient's link: it carries a token that is as good as a password.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one SMTP conversation may take before it is abandoned (and logged).
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends (or files) mail. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

#[derive(Clone, Debug)]
enum Transport {
    /// The embedded default: `.eml` files in this directory.
    Outbox(Arc<PathBuf>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// What a message is for: a bounded label for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    VerifyEmail,
    PasswordReset,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// One message to one user, with a plain-text and an HTML body.
#[derive(Clone)]
pub struct Mail {
    pub kind: Kind,
    pub user_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

// The bodies carry a token: never in a log line.
impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Checks `SMTP_URL` and turns it into the form lettre reads: `tls=starttls` is
/// lettre's `tls=required` (STARTTLS, refusing to go on without it).
pub fn smtp_url(url: &str) -> Result<String, String> {
    if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
        return Err("must start with smtp:// or smtps://".into());
    }
    let url = url.replace("tls=starttls", "tls=required");
    AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
        .map(|_| url.clone())
        .map_err(|_| {
            "is not a valid SMTP URL (smtp://user:pass@host:port?tls=starttls or smtps://...)"
                .to_owned()
        })
}

// === impl Mailer ===

impl Mailer {
    /// An SMTP mailer when `smtp_url` is set, otherwise the outbox in `outbox`.
    pub fn new(smtp_url: Option<&str>, from: &str, outbox: PathBuf) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().context("MAIL_FROM")?;
        let transport = match smtp_url {
            Some(url) => {
                let url = self::smtp_url(url).map_err(|e| anyhow::anyhow!("SMTP_URL {e}"))?;
                Transport::Smtp(
                    AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
                        .context("SMTP_URL")?
                        .timeout(Some(SMTP_TIMEOUT))
                        .build(),
                )
            }
            None => {
                std::fs::create_dir_all(&outbox)
                    .with_context(|| format!("creating the outbox {}", outbox.display()))?;
                Transport::Outbox(Arc::new(outbox))
            }
        };
        Ok(Self { from, transport })
    }

    /// Delivers `mail` in the background; the outcome is logged.
    pub fn spawn(&self, mail: Mail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            let (kind, user_id) = (mail.kind.as_str(), mail.user_id.clone());
            match mailer.deliver(mail).await {
                Ok(()) => {
                    metrics::counter!("latchkey_mail_total", "kind" => kind, "result" => "sent")
                        .increment(1);
                }
                Err(err) => {
                    metrics::counter!("latchkey_mail_total", "kind" => kind, "result" => "failed")
                        .increment(1);
                    tracing::error!(
                        kind,
                        user_id,
                        error = format!("{err:#}"),
                        "mail could not be delivered"
                    );
                }
            }
        });
    }

    /// Sends or files `mail` now.
    pub async fn deliver(&self, mail: Mail) -> anyhow::Result<()> {
        let to: Mailbox = mail.to.parse().context("the recipient address")?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .context("building the message")?;
        let kind = mail.kind.as_str();
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await.context("SMTP")?;
                tracing::info!(kind, user_id = mail.user_id, "mail sent");
            }
            Transport::Outbox(dir) => {
                let path = dir.join(format!(
                    "{}-{}-{}.eml",
                    latchkey_store::now_ms(),
                    kind,
                    uuid::Uuid::new_v4().simple()
                ));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .with_context(|| format!("writing {}", path.display()))?;
                tracing::info!(
                    kind,
                    user_id = mail.user_id,
                    path = %path.display(),
                    "no SMTP_URL: mail written to the outbox"
                );
            }
        }
        Ok(())
    }
}

// === templates ===

/// The account-activation message with its link.
pub fn verify_email(user_id: &str, to: &str, name: &str, link: &str, valid_for: &str) -> Mail {
    Mail {
        kind: Kind::VerifyEmail,
        user_id: user_id.to_owned(),
        to: to.to_owned(),
        subject: "Confirm your email address".into(),
        text: format!(
            "Hello {name},\n\nConfirm your email address to activate your account:\n\n{link}\n\n\
             The link works once, for {valid_for}. If you did not create an account, ignore this message.\n"
        ),
        html: html_page(
            name,
            "Confirm your email address to activate your account.",
            link,
            "Confirm email address",
            valid_for,
            "If you did not create an account, ignore this message.",
        ),
    }
}

/// The password-reset message with its link.
pub fn password_reset(user_id: &str, to: &str, name: &str, link: &str, valid_for: &str) -> Mail {
    Mail {
        kind: Kind::PasswordReset,
        user_id: user_id.to_owned(),
        to: to.to_owned(),
        subject: "Reset your password".into(),
        text: format!(
            "Hello {name},\n\nSomeone asked to reset the password of your account. To choose a new one, open:\n\n{link}\n\n\
             The link works once, for {valid_for}. If it was not you, ignore this message: your password stays as it is.\n"
        ),
        html: html_page(
            name,
            "Someone asked to reset the password of your account. To choose a new one, follow this link.",
            link,
            "Reset password",
            valid_for,
            "If it was not you, ignore this message: your password stays as it is.",
        ),
    }
}

fn html_page(
    name: &str,
    lead: &str,
    link: &str,
    action: &str,
    valid_for: &str,
    footer: &str,
) -> String {
    let (name, link) = (escape(name), escape(link));
    format!(
        "<!doctype html>\n<html><body>\n<p>Hello {name},</p>\n<p>{lead}</p>\n\
         <p><a href=\"{link}\">{action}</a></p>\n\
         <p>The link works once, for {valid_for}. {footer}</p>\n</body></html>\n"
    )
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "30 minutes", "24 hours": how long a link works, for the message.
pub fn describe(ttl: Duration) -> String {
    let secs = ttl.as_secs();
    let (n, unit) = if secs.is_multiple_of(86_400) && secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs.is_multiple_of(3600) && secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs.is_multiple_of(60) && secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        assert_eq!(
            smtp_url("smtp://u:p@mail.example.com:587?tls=starttls").as_deref(),
            Ok("smtp://u:p@mail.example.com:587?tls=required")
        );
        assert!(smtp_url("smtps://u:p@mail.example.com:465").is_ok());
        assert!(smtp_url("smtp://127.0.0.1:2525").is_ok());
        assert!(smtp_url("http://mail.example.com").is_err());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(describe(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(describe(Duration::from_secs(86_400)), "1 day");
        assert_eq!(describe(Duration::from_secs(7200)), "2 hours");
    }

    #[test]
    fn html_is_escaped() {
        let mail = verify_email(
            "u1",
            "a@example.com",
            "<b>Al</b>",
            "https://x/?a=1&b=2",
            "1 day",
        );
        assert!(mail.html.contains("&lt;b&gt;Al&lt;/b&gt;"));
        assert!(mail.html.contains("https://x/?a=1&amp;b=2"));
    }
}
