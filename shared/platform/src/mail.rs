//! The one mailer every service sends through (verification links, password resets, invites).
//! `file://DIR` writes each message as an `.eml` file under DIR — the development default,
//! `./data/mail` — and `smtp://` / `smtps://user:pass@host:port` sends over SMTP in production.

use std::path::PathBuf;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::Reason;
use crate::error::{ApiError, ApiResult};

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// `.eml` files in a directory.
    Files(PathBuf, AsyncFileTransport<Tokio1Executor>),
    /// An SMTP relay.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Files(dir, _) => write!(f, "Mailer::Files({})", dir.display()),
            Mailer::Smtp(_) => f.write_str("Mailer::Smtp(..)"),
        }
    }
}

/// One outgoing message.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// `from` (`Name <address>` or an address) with its name replaced by `name`: how mail sent
/// for an organization carries the organization's mail sender name (rule ORG-13).
pub fn with_sender_name(from: &str, name: &str) -> ApiResult<String> {
    let mailbox: Mailbox = from
        .parse()
        .map_err(|e| ApiError::internal(format!("bad sender address {from}: {e}")))?;
    Ok(Mailbox::new(Some(name.to_owned()), mailbox.email).to_string())
}

impl Mailer {
    /// A mailer for `url`: `file://DIR`, `smtp://…` or `smtps://…` (lettre's SMTP URL syntax).
    /// Must be called inside the Tokio runtime (the SMTP pool starts there).
    pub fn from_url(url: &str) -> ApiResult<Self> {
        if let Some(dir) = url.strip_prefix("file://") {
            return Ok(Self::files(PathBuf::from(dir)));
        }
        if url.starts_with("smtp://") || url.starts_with("smtps://") {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map_err(|e| ApiError::invalid_argument("mail_url", e.to_string()))?
                .build();
            return Ok(Self::Smtp(transport));
        }
        Err(ApiError::invalid_argument(
            "mail_url",
            "expected file://DIR, smtp://… or smtps://…",
        ))
    }

    /// Writes `.eml` files into `dir` (created on first use).
    pub fn files(dir: PathBuf) -> Self {
        let transport = AsyncFileTransport::<Tokio1Executor>::new(&dir);
        Self::Files(dir, transport)
    }

    /// A description for start-up banners, without credentials.
    pub fn describe(&self) -> String {
        match self {
            Mailer::Files(dir, _) => format!("files in {}", dir.display()),
            Mailer::Smtp(_) => "SMTP".to_owned(),
        }
    }

    /// Sends `mail` from `from`. Failures are UNAVAILABLE (the caller may retry).
    pub async fn send(&self, from: &str, mail: Mail) -> ApiResult<()> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| ApiError::internal(format!("bad sender address {from}: {e}")))?;
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| ApiError::invalid_argument("email", "not a deliverable address"))?;
        // Plain 7-bit text when possible, so that links stay copyable from the `.eml` file;
        // quoted-printable only when the body needs it.
        let text = mail.body.replace("\r\n", "\n").replace('\n', "\r\n");
        // RFC 5322 allows 7-bit lines of up to 998 characters; lettre's own choice prefers
        // quoted-printable past 76, which breaks long links when read from an `.eml` file.
        let plain = text.is_ascii()
            && !text.contains('\0')
            && text.split("\r\n").all(|line| line.len() <= 998);
        let body = if plain {
            Body::dangerous_pre_encoded(text.into_bytes(), ContentTransferEncoding::SevenBit)
        } else {
            Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable)
                .map_err(|_| ApiError::internal("mail body cannot be encoded"))?
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(ApiError::internal)?;
        let sent = match self {
            Mailer::Files(dir, transport) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(ApiError::internal)?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Mailer::Smtp(transport) => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        sent.map_err(|e| {
            tracing::warn!(error = %e, "sending mail failed");
            ApiError::unavailable(Reason::MailUnavailable, "the mail could not be sent; retry")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_name_replaces_the_name_and_keeps_the_address() {
        let from =
            with_sender_name("Orgplane <no-reply@orgplane.dev>", "Acme \"Support\"").unwrap();
        let parsed: Mailbox = from.parse().unwrap();
        assert_eq!(parsed.name.as_deref(), Some("Acme \"Support\""));
        assert_eq!(parsed.email.to_string(), "no-reply@orgplane.dev");
        assert!(with_sender_name("not an address", "x").is_err());
    }

    #[tokio::test]
    async fn file_mailer_writes_an_eml_file() {
        let dir = tempfile::tempdir().unwrap();
        let mailer =
            Mailer::from_url(&format!("file://{}", dir.path().join("mail").display())).unwrap();
        mailer
            .send(
                "Orgplane <no-reply@orgplane.dev>",
                Mail {
                    to: "ada@example.com".into(),
                    subject: "Verify".into(),
                    body: format!(
                        "Hello,\n\nopen https://orgplane.test/verify?token=abc{} within a day.\n",
                        "x".repeat(90)
                    ),
                },
            )
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
            .unwrap()
            .collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(text.contains("ada@example.com"));
        assert!(text.contains("Content-Transfer-Encoding: 7bit"), "{text}");
        assert!(
            text.contains("https://orgplane.test/verify?token=abc"),
            "links are not mangled by quoted-printable: {text}"
        );
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused() {
        assert!(Mailer::from_url("ftp://x").is_err());
        assert!(Mailer::from_url("smtp://localhost:2525").is_ok());
    }
}
