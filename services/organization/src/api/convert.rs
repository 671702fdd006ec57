//! The API form of the stored resources: what the handlers answer, and (the same message) what
//! the audit log records as before/after images (ORG-10). Times via
//! [`orgplane_platform::convert`], etags `v<version>`.

use orgplane_platform::audit::{AuditImage, proto_json};
use orgplane_platform::convert::{etag, timestamp_ms as ts};
use orgplane_proto::organization::v1::{
    Domain, DomainChallenge, DomainCheck, Invite, Member, Organization, Unit, VerifiedDomain,
};

use crate::app::domains::DomainView;
use crate::app::{InviteView, MemberView};
use crate::domain::domains::challenge_value;
use crate::domain::validate::invite_state;
use crate::store::{domain, invite, member, organization, unit};

/// The API form of a security policy in force (rule ORG-16).
pub use crate::app::security::message as security_policy;

/// The API form of an organization.
pub fn organization(o: &organization::Model) -> Organization {
    Organization {
        id: o.id.clone(),
        name: o.name.clone(),
        r#type: o.org_type,
        primary_email: o.primary_email.clone(),
        state: o.state,
        owner_user_id: o.owner_user_id.clone(),
        create_time: Some(ts(o.create_time_ms)),
        update_time: Some(ts(o.update_time_ms)),
        delete_time: o.delete_time_ms.map(ts),
        purge_time: o.purge_time_ms.map(ts),
        etag: etag(o.version),
        kind: o.kind,
        operator_organization_id: o.operator_id.clone(),
        merged_into_organization_id: o.merged_into_id.clone(),
    }
}

/// The API form of a membership as stored (no display name: that comes from identity).
pub fn member(m: &member::Model) -> Member {
    Member {
        organization_id: m.organization_id.clone(),
        user_id: m.user_id.clone(),
        email: m.email.clone(),
        display_name: String::new(),
        role: m.role,
        create_time: Some(ts(m.create_time_ms)),
        update_time: Some(ts(m.update_time_ms)),
        etag: etag(m.version),
    }
}

/// The API form of a membership with identity's facts.
pub fn member_view(v: &MemberView) -> Member {
    Member {
        display_name: v.display_name.clone(),
        ..member(&v.member)
    }
}

/// The API form of an invite of organization `organization_name` at `now_ms`.
pub fn invite(i: &invite::Model, organization_name: &str, now_ms: i64) -> Invite {
    Invite {
        id: i.id.clone(),
        organization_id: i.organization_id.clone(),
        organization_name: organization_name.to_owned(),
        email: i.email.clone(),
        role: i.role,
        state: invite_state(i.state, i.expire_time_ms, now_ms) as i32,
        inviter_user_id: i.inviter_user_id.clone(),
        inviter_api_key_id: i.inviter_api_key_id.clone(),
        create_time: Some(ts(i.create_time_ms)),
        expire_time: Some(ts(i.expire_time_ms)),
        accept_time: i.accept_time_ms.map(ts),
        accepted_user_id: i.accepted_user_id.clone(),
        delete_time: i.delete_time_ms.map(ts),
    }
}

/// The API form of an invite as answered.
pub fn invite_view(v: &InviteView) -> Invite {
    invite(&v.invite, &v.organization_name, v.now_ms)
}

/// The API form of a unit.
pub fn unit(u: &unit::Model) -> Unit {
    Unit {
        id: u.id.clone(),
        organization_id: u.organization_id.clone(),
        parent_unit_id: u.parent_unit_id.clone(),
        name: u.name.clone(),
        depth: u.depth,
        create_time: Some(ts(u.create_time_ms)),
        update_time: Some(ts(u.update_time_ms)),
        etag: etag(u.version),
    }
}

impl AuditImage for organization::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&organization(self))
    }
}

impl AuditImage for member::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&member(self))
    }
}

impl AuditImage for unit::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&unit(self))
    }
}

impl AuditImage for InviteView {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&invite(&self.invite, &self.organization_name, self.now_ms))
    }
}

/// The API form of a domain as answered (rule ORG-14).
pub fn domain_view(v: &DomainView) -> Domain {
    let d = &v.domain;
    let found: Vec<String> = serde_json::from_str(&d.check_found).unwrap_or_default();
    Domain {
        id: d.id.clone(),
        organization_id: d.organization_id.clone(),
        domain_name: d.domain_name.clone(),
        state: v.state() as i32,
        policy: d.policy,
        challenge: Some(DomainChallenge {
            record_name: v.record_name.clone(),
            record_type: "TXT".to_owned(),
            record_value: challenge_value(&d.token),
        }),
        last_check: d.check_time_ms.map(|t| DomainCheck {
            check_time: Some(ts(t)),
            outcome: d.check_outcome,
            found_values: found,
            detail: d.check_detail.clone(),
        }),
        create_time: Some(ts(d.create_time_ms)),
        update_time: Some(ts(d.update_time_ms)),
        verify_time: d.verify_time_ms.map(ts),
        expire_time: d.verify_time_ms.is_none().then(|| ts(d.expire_time_ms)),
        etag: etag(d.version),
    }
}

/// The replicated form of a VERIFIED domain.
pub fn verified_domain(d: &domain::Model) -> VerifiedDomain {
    VerifiedDomain {
        domain_id: d.id.clone(),
        organization_id: d.organization_id.clone(),
        domain_name: d.domain_name.clone(),
        policy: d.policy,
    }
}

impl AuditImage for DomainView {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&domain_view(self))
    }
}
