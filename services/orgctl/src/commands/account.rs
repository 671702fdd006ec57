//! Accounts and sessions: `signup`, `verify-email`, `resend-verification`, `login`, `logout`,
//! `whoami`.

use orgplane_proto::identity::v1::{
    GetUserRequest, LoginRequest, LogoutRequest, ResendVerificationRequest, SignUpRequest,
    VerifyEmailRequest, VerifyMfaChallengeRequest,
};
use orgplane_proto::organization::v1::GetMyOrganizationRequest;
use serde_json::json;

use crate::app::{App, session_from};
use crate::cli::{LoginArgs, SignupArgs};
use crate::config::Credentials;
use crate::errors::Failure;
use crate::output::{self, proto_json};

fn password(app: &mut App, from_stdin: bool, prompt: &str) -> Result<String, Failure> {
    let password = if from_stdin {
        app.stdin_line("password")?
    } else {
        app.prompt_hidden(prompt)?
    };
    if password.is_empty() {
        return Err(Failure::usage("the password is empty"));
    }
    Ok(password)
}

/// `orgctl signup`.
pub async fn signup(app: &mut App, args: SignupArgs) -> Result<(), Failure> {
    let api = app.anonymous()?;
    let password = if args.password_stdin {
        password(app, true, "")?
    } else {
        let first = password(app, false, "Password (12 characters or more): ")?;
        let again = app.prompt_hidden("Password again: ")?;
        if first != again {
            return Err(Failure::usage("the passwords differ"));
        }
        first
    };
    let answer = api
        .identity()
        .sign_up(api.request(SignUpRequest {
            email: args.email.clone(),
            password,
            display_name: args.name,
            account_type: args.account_type.number(),
            request_id: uuid::Uuid::new_v4().to_string(),
        }))
        .await?
        .into_inner();
    let value = proto_json(&answer);
    output::print_one(app.format, &value, "user");
    eprintln!(
        "a verification link was mailed to {}: run `orgctl verify-email <token from the mail>`",
        args.email
    );
    Ok(())
}

/// The token of a verification link, or the argument itself.
fn token_of(text: &str) -> String {
    let text = text.trim();
    match text.find("token=") {
        Some(i) => text[i + "token=".len()..]
            .split(['&', '#'])
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => text.to_owned(),
    }
}

/// `orgctl verify-email TOKEN`.
pub async fn verify_email(app: &mut App, token: &str) -> Result<(), Failure> {
    let token = token_of(token);
    if token.is_empty() {
        return Err(Failure::usage("the token is empty"));
    }
    let api = app.anonymous()?;
    let answer = api
        .identity()
        .verify_email(api.request(VerifyEmailRequest { token }))
        .await?
        .into_inner();
    output::print_one(app.format, &proto_json(&answer), "user");
    if let Some(user) = &answer.user {
        eprintln!("{} is verified", user.email);
    }
    Ok(())
}

/// `orgctl resend-verification EMAIL`.
pub async fn resend_verification(app: &mut App, email: String) -> Result<(), Failure> {
    let api = app.anonymous()?;
    let answer = api
        .identity()
        .resend_verification(api.request(ResendVerificationRequest {
            email: email.clone(),
        }))
        .await?
        .into_inner();
    if app.format == output::Format::Json {
        output::print_json(&proto_json(&answer));
    }
    eprintln!("if {email} has an unverified account, a new link is on its way");
    Ok(())
}

/// `orgctl login`.
pub async fn login(app: &mut App, args: LoginArgs) -> Result<(), Failure> {
    let email = match args.email {
        Some(e) => e,
        None if args.password_stdin => {
            return Err(Failure::usage(
                "pass the email address as an argument with --password-stdin",
            ));
        }
        None => app.prompt("Email: ")?,
    };
    if email.is_empty() {
        return Err(Failure::usage("the email address is empty"));
    }
    let api = app.anonymous()?;
    let password = password(app, args.password_stdin, "Password: ")?;
    let answer = api
        .identity()
        .login(api.request(LoginRequest {
            email: email.clone(),
            password,
        }))
        .await?
        .into_inner();
    let (tokens, user) = match (answer.tokens, answer.mfa_challenge) {
        (Some(tokens), _) => (tokens, answer.user),
        (None, Some(challenge)) => {
            let code = match args.mfa_code {
                Some(c) => c,
                None if args.password_stdin => app.stdin_line("authentication code")?,
                None => app.prompt_hidden("Authentication code (or a recovery code): ")?,
            };
            let code = code.trim().replace(' ', "");
            if code.is_empty() {
                return Err(Failure::usage("the authentication code is empty"));
            }
            let totp = code.len() == 6 && code.chars().all(|c| c.is_ascii_digit());
            let verified = api
                .identity()
                .verify_mfa_challenge(api.request(VerifyMfaChallengeRequest {
                    challenge_id: challenge.challenge_id,
                    totp_code: if totp { code.clone() } else { String::new() },
                    recovery_code: if totp { String::new() } else { code },
                    passkey_assertion_json: String::new(),
                }))
                .await?
                .into_inner();
            let tokens = verified.tokens.ok_or_else(|| {
                Failure::local("the server completed the challenge without tokens")
            })?;
            (tokens, verified.user.or(answer.user))
        }
        (None, None) => {
            return Err(Failure::local(
                "the server answered Login with neither tokens nor a challenge",
            ));
        }
    };
    let user = user.unwrap_or_default();
    let user_id = user.id.clone();
    let session = session_from(tokens, user_id.clone(), user.email.clone());
    app.set_credentials(Some(Credentials::Session(session)))?;
    output::print_one(app.format, &json!({ "user": proto_json(&user) }), "user");
    eprintln!(
        "signed in as {} ({user_id}) in context {:?}",
        user.email,
        app.context_name()?
    );
    if !answer.mfa_enrollment_required_organization_ids.is_empty() {
        eprintln!(
            "warning: these organizations require a second factor you have not enrolled: {}",
            answer.mfa_enrollment_required_organization_ids.join(", ")
        );
    }
    Ok(())
}

/// `orgctl logout`.
pub async fn logout(app: &mut App, all_sessions: bool) -> Result<(), Failure> {
    let credentials = app.context()?.credentials.clone();
    let Some(Credentials::Session(session)) = credentials else {
        return Err(Failure::config(
            "the context holds no session (`orgctl context set-credentials` manages API keys and service tokens)",
        ));
    };
    let api = app.anonymous()?;
    // Forget the tokens first: whatever the server says, they are not used again.
    app.set_credentials(None)?;
    let answer = api
        .identity()
        .logout(api.request(LogoutRequest {
            refresh_token: session.refresh_token,
            all_sessions,
        }))
        .await?
        .into_inner();
    if app.format == output::Format::Json {
        output::print_json(&proto_json(&answer));
    }
    eprintln!(
        "signed out ({} session(s) ended)",
        answer.ended_session_count
    );
    Ok(())
}

/// `orgctl whoami`.
pub async fn whoami(app: &mut App) -> Result<(), Failure> {
    let credentials = app.context()?.credentials.clone();
    let api = app.api().await?;
    match credentials {
        Some(Credentials::Session(_)) => {
            let answer = api
                .identity()
                .get_user(api.request(GetUserRequest {
                    user_id: "me".into(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "user");
        }
        Some(Credentials::ApiKey { .. }) => {
            let answer = api
                .organization()
                .get_my_organization(api.request(GetMyOrganizationRequest {}))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "organization");
        }
        Some(c) => {
            output::print_one(app.format, &json!({ "credentials": c.describe() }), "");
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_come_out_of_links() {
        assert_eq!(
            super::token_of("http://localhost:3000/verify-email?token=abc_123&x=1"),
            "abc_123"
        );
        assert_eq!(super::token_of(" abc "), "abc");
    }
}
