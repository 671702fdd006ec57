//! Proto conversion of SCIM tokens and settings (rule ID-14). A token's message never carries
//! its secret or digest; these conversions are also the audit log's images of both.

use orgplane_platform::audit::{AuditImage, proto_json};
use orgplane_platform::convert::{etag, timestamp_ms};
use orgplane_proto::identity::v1::{ScimGroupMapping, ScimSettings, ScimToken};

use crate::app::scim::settings::ScimSettings as Settings;
use crate::store::entity::scim_token;

impl From<&scim_token::Model> for ScimToken {
    fn from(t: &scim_token::Model) -> ScimToken {
        ScimToken {
            id: t.id.clone(),
            organization_id: t.organization_id.clone(),
            display_name: t.display_name.clone(),
            state: t.state,
            partial_token_hint: t.partial_hint.clone(),
            allow_unverified_user_names: t.allow_unverified,
            creator_user_id: t.creator_user_id.clone(),
            create_time: Some(timestamp_ms(t.create_time_ms)),
            update_time: Some(timestamp_ms(t.update_time_ms)),
            last_used_time: t.last_used_ms.map(timestamp_ms),
            etag: etag(t.version),
        }
    }
}

impl AuditImage for scim_token::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&ScimToken::from(self))
    }
}

impl From<&Settings> for ScimSettings {
    fn from(s: &Settings) -> ScimSettings {
        ScimSettings {
            organization_id: s.organization_id.clone(),
            group_mappings: s
                .mappings
                .iter()
                .map(|(group, role)| ScimGroupMapping {
                    group_display_name: group.clone(),
                    organization_role: *role as i32,
                })
                .collect(),
            default_role: s.default_role as i32,
            update_time: s.update_time_ms.map(timestamp_ms),
            etag: etag(s.version),
        }
    }
}

impl AuditImage for Settings {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&ScimSettings::from(self))
    }
}
