//! What orgctl prints when something fails, and its exit codes.
//!
//! A refused call prints `error: <message>`, then the ErrorInfo `reason` (a name of
//! `orgplane.errors.v1.ErrorReason`) with the gRPC code, the ErrorInfo metadata, every
//! BadRequest field violation, PreconditionFailure and QuotaFailure violation, the RetryInfo
//! delay, and a `hint:` line saying what to do for the common reasons.

use std::fmt::Write as _;

use orgplane_proto::errors::v1::ErrorReason;
use tonic::Code;
use tonic_types::StatusExt;

/// Exit code: the server refused or failed the request.
pub const EXIT_SERVER: u8 = 1;
/// Exit code: the command line is wrong (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the local configuration (file, context, credentials) is missing or wrong.
pub const EXIT_CONFIG: u8 = 3;
/// Exit code: the server could not be reached (connection, TLS).
pub const EXIT_CONNECT: u8 = 4;
/// Exit code: `orgctl check` answered "denied".
pub const EXIT_DENIED: u8 = 5;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong.
    Usage(String),
    /// The configuration is missing or wrong.
    Config(String),
    /// The server could not be reached.
    Connect(String),
    /// The server answered with an error.
    Status(Box<tonic::Status>),
    /// `check` answered that access is denied (already printed).
    Denied,
    /// Anything else on this side (a file that cannot be read, a terminal that cannot prompt).
    Local(String),
}

impl Failure {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Failure::Config(message.into())
    }

    /// A local error.
    pub fn local(message: impl Into<String>) -> Self {
        Failure::Local(message.into())
    }

    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Config(_) => EXIT_CONFIG,
            Failure::Connect(_) => EXIT_CONNECT,
            Failure::Status(_) | Failure::Local(_) => EXIT_SERVER,
            Failure::Denied => EXIT_DENIED,
        }
    }

    /// The text printed on standard error.
    pub fn render(&self) -> String {
        match self {
            Failure::Usage(m) => format!("error: {m}\n(see `orgctl --help`)\n"),
            Failure::Config(m) | Failure::Local(m) => format!("error: {m}\n"),
            Failure::Connect(m) => format!(
                "error: cannot reach the server: {m}\nhint: is it running, and is the context's URL right? (`orgctl context show`)\n"
            ),
            Failure::Status(s) => render_status(s),
            Failure::Denied => String::new(),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        // A call that reached no server: tonic's own UNAVAILABLE, without ErrorInfo.
        if status.code() == Code::Unavailable && status.get_details_error_info().is_none() {
            return Failure::Connect(chain(status.message(), std::error::Error::source(&status)));
        }
        Failure::Status(Box::new(status))
    }
}

impl From<tonic::transport::Error> for Failure {
    fn from(e: tonic::transport::Error) -> Self {
        Failure::Connect(chain(&e.to_string(), std::error::Error::source(&e)))
    }
}

/// A message followed by its error's sources, each said once.
fn chain(message: &str, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut out = message.to_owned();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
    }
    out
}

/// The name of a gRPC code as grpc-status documents it (`FAILED_PRECONDITION`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Renders a refused call with all its details.
pub fn render_status(status: &tonic::Status) -> String {
    let mut out = String::new();
    let message = if status.message().is_empty() {
        code_name(status.code()).to_owned()
    } else {
        status.message().to_owned()
    };
    let _ = writeln!(out, "error: {message}");
    let details = status.get_error_details();
    let reason = details.error_info().map(|i| i.reason.clone());
    if let Some(r) = &reason {
        let known = if ErrorReason::from_str_name(r).is_some() {
            ""
        } else {
            " (a reason this orgctl does not know)"
        };
        let _ = writeln!(out, "reason: {r}{known}");
    }
    let _ = writeln!(out, "code: {}", code_name(status.code()));
    if let Some(info) = details.error_info() {
        let mut metadata: Vec<_> = info.metadata.iter().collect();
        metadata.sort();
        for (k, v) in metadata {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            let _ = writeln!(out, "invalid field `{}`: {}", v.field, v.description);
        }
    }
    if let Some(pre) = details.precondition_failure() {
        for v in &pre.violations {
            let _ = writeln!(
                out,
                "precondition {} {}: {}",
                v.r#type, v.subject, v.description
            );
        }
    }
    if let Some(quota) = details.quota_failure() {
        for v in &quota.violations {
            let _ = writeln!(out, "quota {}: {}", v.subject, v.description);
        }
    }
    if let Some(retry) = details.retry_info()
        && let Some(delay) = retry.retry_delay
    {
        let _ = writeln!(out, "retry after: {:.1}s", delay.as_secs_f64());
    }
    if let Some(help) = details.help() {
        for link in &help.links {
            let _ = writeln!(out, "see: {} {}", link.description, link.url);
        }
    }
    if let Some(hint) = hint(status.code(), reason.as_deref()) {
        let _ = writeln!(out, "hint: {hint}");
    }
    out
}

/// What to do about a refused call, for the common reasons.
pub fn hint(code: Code, reason: Option<&str>) -> Option<&'static str> {
    use ErrorReason as R;
    // Matched on the contract's enum: a reason renamed or removed there fails to compile here.
    let reason = reason
        .and_then(ErrorReason::from_str_name)
        .unwrap_or(ErrorReason::Unspecified);
    let by_reason = match reason {
        R::EmailNotVerified => {
            "verify your address with `orgctl verify-email <token from the mail>` (`orgctl resend-verification EMAIL` mails a new link)"
        }
        R::MfaRequired => {
            "this organization requires a second factor: run `orgctl login` again and enter your authenticator code (enroll a factor first if you have none)"
        }
        R::MfaEnrollmentRequired => {
            "this organization requires a second factor you have not enrolled yet; enroll an authenticator app, then run `orgctl login` again"
        }
        R::SsoRequired | R::SsoSignInRequired => {
            "this address signs in through single sign-on, which orgctl does not do; use an API key (`orgctl context set-credentials --api-key-stdin`)"
        }
        R::ReauthenticationRequired => {
            "this action needs a recent sign-in: run `orgctl login` again and retry within a few minutes"
        }
        R::InvalidToken
        | R::SessionRevoked
        | R::SessionEnded
        | R::RefreshTokenInvalid
        | R::RefreshTokenReused
        | R::CredentialsRequired => {
            "your session has expired or ended: sign in again with `orgctl login`"
        }
        R::InvalidCredentials => "check the email address and password",
        R::InvalidMfaCode => {
            "enter a current code from your authenticator app (or an unused recovery code)"
        }
        R::MfaChallengeInvalid => "the second-factor step expired: run `orgctl login` again",
        R::EmailAlreadyRegistered => {
            "the address already has an account: sign in with `orgctl login`"
        }
        R::VerificationTokenInvalid | R::VerificationTokenExpired => {
            "request a new verification mail with `orgctl resend-verification EMAIL`"
        }
        R::BusinessAccountRequired => {
            "only business accounts may create organizations (sign up with `--account-type business`)"
        }
        R::InsufficientRole => {
            "your role does not allow this; ask an OWNER or ADMIN of the organization (`orgctl members list`)"
        }
        R::UserCredentialsRequired | R::MemberCredentialsRequired => {
            "this needs a signed-in person, not an API key or service: run `orgctl login` in a context"
        }
        R::ApiKeyInvalid | R::ApiKeyInactive => {
            "the context's API key is not accepted: set another with `orgctl context set-credentials --api-key-stdin`"
        }
        R::AmbiguousCredentials => "send one credential only: check the context's credentials",
        R::UnknownClientCertificate => {
            "the server wants a client certificate it knows: `orgctl context add … --client-cert FILE --client-key FILE`"
        }
        R::RateLimited => "too many attempts: wait for the retry delay and try again",
        R::RevisionNotYetApplied | R::RolesNotSynced => {
            "the server has not caught up with a recent change yet: retry in a moment (if the server was reset, `orgctl login` forgets the remembered revisions)"
        }
        R::EtagMismatch | R::ConcurrentWrite => "it changed meanwhile: read it again and retry",
        R::OrganizationNameTaken | R::WorkspaceNameTaken => "choose another name",
        R::ConfirmNameMismatch => "pass the organization's exact name with `--confirm`",
        R::InviteEmailMismatch => {
            "the invite was sent to another address: sign in as that address (`orgctl login`) to accept it"
        }
        R::InviteExpired | R::InviteNotPending => "ask for a new invite",
        R::InviteAlreadyPending => {
            "an invite to this address is pending: see `orgctl invites list`"
        }
        R::AlreadyAMember => "already a member: see `orgctl members list`",
        R::NotOrganizationMember => {
            "the user must join the organization first (`orgctl invites create`); if they just joined, pass `--min-org-revision` with the revision `invites accept` printed"
        }
        R::WorkspaceArchived => "archived workspaces are read-only",
        R::WorkspaceLimitReached => {
            "archive a workspace you no longer need (`orgctl workspaces archive`)"
        }
        R::RoleInheritedFromOrganization => {
            "this role comes from the organization role: change it with `orgctl members set-role`"
        }
        R::OwnerRoleImmutable | R::OwnerRoleNotAssignable | R::OwnerProtected => {
            "the OWNER's role changes only by transferring ownership"
        }
        R::CheckOwnAccessOnly | R::SubjectNotCaller => {
            "a user may check only their own access; product backends check others with a service token"
        }
        R::WorkspaceKeyNotAllowed | R::WorkspaceApiKeyNotAllowed | R::AdminApiKeyRequired => {
            "this needs another kind of credential: see `orgctl context set-credentials --help`"
        }
        R::CapabilityRequired => {
            "the service account lacks the capability this call needs (`--service-accounts`)"
        }
        R::SecretAlreadyReturned => {
            "the key exists but its secret cannot be shown again: revoke it and create another"
        }
        R::MergeConflicts => {
            "resolve the blocking conflicts first: `orgctl org merge PRIME CANDIDATE --preview` lists them"
        }
        R::MergePrimeDomainNotVerified | R::MergeOwnerNotInPrimeDomain => {
            "the prime organization needs a verified domain that holds your address"
        }
        R::MergeCandidateHasVerifiedDomain => {
            "delete the candidate's verified domain first (it would compete with the prime's)"
        }
        R::AccountLimitReached => {
            "close an account you no longer need (`orgctl accounts close`), or ask the operator to raise the organization's limit"
        }
        R::SubaccountLimitReached => "close a subaccount you no longer need",
        R::AccountOwnerNotManaged => {
            "accounts belong to members: invite the new owner first (`orgctl invites create`)"
        }
        R::AccountNotManaged => {
            "the organization does not manage this account; only its home organization may change it (`orgctl accounts get ID`)"
        }
        R::AccountHasSubaccounts => {
            "close its subaccounts first (`orgctl accounts subaccounts list ID`)"
        }
        R::AccountImportNotPending => {
            "there is no pending import of this account into that organization: ask its administrators to import it"
        }
        R::AccountIsSubaccount => {
            "subaccounts move and hold nothing on their own: use the parent account"
        }
        R::EmailDomainNotVerified => {
            "the address's domain must be a verified domain of the organization first"
        }
        R::ModelPriceMissing => {
            "the server's price table lacks a model used in the range (`--billing-price-table`)"
        }
        _ => "",
    };
    if !by_reason.is_empty() {
        return Some(by_reason);
    }
    match code {
        Code::Unauthenticated => Some("sign in again with `orgctl login`"),
        Code::NotFound => Some("check the id, and that you are a member of its organization"),
        Code::DeadlineExceeded => Some("the server took too long; retry, or raise `--timeout`"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_reason_violations_and_hint() {
        let details = tonic_types::ErrorDetails::with_error_info(
            "EMAIL_NOT_VERIFIED",
            "orgplane.dev",
            std::collections::HashMap::new(),
        );
        let status = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "verify your email first",
            details,
        );
        let text = render_status(&status);
        assert!(text.starts_with("error: verify your email first\nreason: EMAIL_NOT_VERIFIED\n"));
        assert!(text.contains("hint: verify your address with `orgctl verify-email"));

        let mut details =
            tonic_types::ErrorDetails::with_bad_request_violation("email", "malformed");
        details.set_error_info(
            "INVALID_ARGUMENT",
            "orgplane.dev",
            std::collections::HashMap::new(),
        );
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "bad", details);
        let text = render_status(&status);
        assert!(text.contains("invalid field `email`: malformed"), "{text}");
    }

    #[test]
    fn a_call_that_reached_no_server_is_a_connect_failure() {
        let failure = Failure::from(tonic::Status::unavailable("tcp connect error"));
        assert_eq!(failure.exit_code(), EXIT_CONNECT);
    }
}
