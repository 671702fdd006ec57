//! Proto conversion of identity's rows and outcomes (never a secret or a hash). The `From`
//! impls also give the audit log its before/after images (the resource's proto message).

use orgplane_platform::convert::{etag, timestamp_ms};
use orgplane_proto::identity::v1::{
    ApiKey, MfaChallenge, MfaFactor, MfaFactorState, MfaFactorType, SessionTokens, User,
};

use crate::app::challenge::IssuedChallenge;
use crate::app::factors::{KIND_PASSKEY, KIND_TOTP};
use crate::app::sessions::Tokens;
use crate::store::entity::{api_key, mfa_factor, user};

impl From<&user::Model> for User {
    fn from(u: &user::Model) -> User {
        User {
            id: u.id.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            display_name: u.display_name.clone(),
            account_type: u.account_type,
            create_time: Some(timestamp_ms(u.create_time_ms)),
            update_time: Some(timestamp_ms(u.update_time_ms)),
            etag: etag(u.version),
        }
    }
}

impl From<&api_key::Model> for ApiKey {
    fn from(k: &api_key::Model) -> ApiKey {
        ApiKey {
            id: k.id.clone(),
            organization_id: k.organization_id.clone(),
            workspace_id: k.workspace_id.clone(),
            kind: k.kind,
            name: k.name.clone(),
            status: k.status,
            partial_key_hint: k.hint.clone(),
            creator_user_id: k.creator_user_id.clone(),
            create_time: Some(timestamp_ms(k.create_time_ms)),
            update_time: Some(timestamp_ms(k.update_time_ms)),
            last_used_time: k.last_used_time_ms.map(timestamp_ms),
            etag: etag(k.version),
        }
    }
}

impl From<Tokens> for SessionTokens {
    fn from(t: Tokens) -> SessionTokens {
        SessionTokens {
            access_token: t.access_token,
            access_token_expire_time: Some(timestamp_ms(t.access_expire_secs.saturating_mul(1000))),
            refresh_token: t.refresh_token,
            refresh_token_expire_time: Some(timestamp_ms(t.refresh_expire_ms)),
            session_id: t.session_id,
        }
    }
}

impl From<&mfa_factor::Model> for MfaFactor {
    fn from(f: &mfa_factor::Model) -> MfaFactor {
        let active = f.state == MfaFactorState::Active as i32;
        MfaFactor {
            id: f.id.clone(),
            r#type: match f.kind.as_str() {
                KIND_TOTP => MfaFactorType::Totp,
                KIND_PASSKEY => MfaFactorType::Passkey,
                _ => MfaFactorType::Unspecified,
            } as i32,
            display_name: f.display_name.clone(),
            state: f.state,
            create_time: Some(timestamp_ms(f.create_time_ms)),
            last_used_time: f.last_used_time_ms.map(timestamp_ms),
            expire_time: f.expire_time_ms.filter(|_| !active).map(timestamp_ms),
        }
    }
}

impl From<IssuedChallenge> for MfaChallenge {
    fn from(c: IssuedChallenge) -> MfaChallenge {
        MfaChallenge {
            challenge_id: c.id,
            methods: c.methods.into_iter().map(|m| m as i32).collect(),
            expire_time: Some(timestamp_ms(c.expire_time_ms)),
            passkey_request_options_json: c.passkey_request_options_json,
        }
    }
}

/// The paths of an update mask.
pub fn paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}
