//! Settings resolved per field over real gRPC on loopback (rule ORG-13): security policy and
//! branding of operators and their children — inheritance, overrides, clearing, ENFORCED
//! fields, provenance, fan-out events, the operator acting in a child, invite mail branding;
//! SQLite and, for the policy, PostgreSQL (set ORGPLANE_TEST_POSTGRES_URL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

#[path = "hierarchy/common.rs"]
#[allow(dead_code)] // the helpers these tests share with the hierarchy tests
mod common;

use common::{accept, audit_of, create_child, create_operator, create_org_of_kind, watch};
use harness::{Backend, Rig};
use orgplane_proto::audit::v1::ActorKind;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::*;
use prost_types::FieldMask;
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|s| s.to_string()).collect(),
    })
}

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// An UpdateSecurityPolicy request for `org` changing `paths` to what `set` puts in.
fn policy_update(
    org: &str,
    paths: &[&str],
    set: impl FnOnce(&mut SecurityPolicy),
) -> UpdateSecurityPolicyRequest {
    let mut p = SecurityPolicy {
        organization_id: org.into(),
        ..Default::default()
    };
    set(&mut p);
    UpdateSecurityPolicyRequest {
        security_policy: Some(p),
        update_mask: mask(paths),
        etag: String::new(),
    }
}

/// An UpdateBranding request for `org` changing `paths` to what `set` puts in.
fn branding_update(
    org: &str,
    paths: &[&str],
    set: impl FnOnce(&mut Branding),
) -> UpdateBrandingRequest {
    let mut b = Branding {
        organization_id: org.into(),
        ..Default::default()
    };
    set(&mut b);
    UpdateBrandingRequest {
        branding: Some(b),
        update_mask: mask(paths),
        etag: String::new(),
    }
}

/// The error of `r`, checked for `code` and `reason`, with its details.
fn refusal<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    reason: &str,
) -> harness::Details {
    let err = r.expect_err("expected an error");
    assert_eq!(err.code(), code, "{err:?}");
    let d = harness::details(&err);
    assert_eq!(d.reason, reason, "{err:?}");
    d
}

/// `org`'s settings in force as `reader` (signed in with a second factor) reads them.
async fn effective(rig: &Rig, reader: &str, org: &str) -> EffectiveSettings {
    rig.client()
        .get_effective_settings(rig.as_user_mfa(
            reader,
            GetEffectiveSettingsRequest {
                organization_id: org.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .effective_settings
        .unwrap()
}

/// `(source, enforced)` of `field` in `s`.
fn provenance(s: &EffectiveSettings, field: &str) -> (SettingSource, bool) {
    let e = s
        .settings
        .iter()
        .find(|e| e.field == field)
        .unwrap_or_else(|| panic!("{field} in {s:?}"));
    (e.source(), e.enforced)
}

/// An operator `user_op` with a child whose OWNER `user_first` accepted; `(operator, child)`.
async fn operator_and_child(rig: &Rig) -> (Organization, Organization) {
    let op = create_operator(rig, "user_op", "Operator").await;
    let created = create_child(rig, "user_op", &op.id, "Child", "user_first").await;
    accept(rig, "user_first", &created.owner_invite.unwrap().id).await;
    (op, created.organization.unwrap())
}

async fn policy_inheritance(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let (op, child) = operator_and_child(&rig).await;
    let mut c = rig.client();
    let age = "security_policy.reauthentication_max_age";
    let mfa = "security_policy.mfa_requirement";

    // Nothing set anywhere: the system default, 24 entries-free of operator values.
    let s = effective(&rig, "user_first", &child.id).await;
    assert_eq!(s.operator_organization_id, op.id);
    assert_eq!(s.settings.len(), 9, "{s:?}");
    assert_eq!(provenance(&s, age), (SettingSource::System, false));

    // The operator's DEFAULT value shows in the child, from the OPERATOR.
    c.update_security_policy(rig.as_user_mfa(
        "user_op",
        policy_update(&op.id, &["reauthentication_max_age"], |p| {
            p.reauthentication_max_age = seconds(900)
        }),
    ))
    .await
    .unwrap();
    let s = effective(&rig, "user_first", &child.id).await;
    assert_eq!(
        s.security_policy.as_ref().unwrap().reauthentication_max_age,
        seconds(900)
    );
    assert_eq!(provenance(&s, age), (SettingSource::Operator, false));
    assert_eq!(provenance(&s, mfa), (SettingSource::System, false));

    // The child's override wins, from the ORGANIZATION; clearing it inherits again.
    let set_age = |v| {
        policy_update(&child.id, &["reauthentication_max_age"], move |p| {
            p.reauthentication_max_age = v
        })
    };
    let own = c
        .update_security_policy(rig.as_user_mfa("user_first", set_age(seconds(600))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        own.security_policy.unwrap().reauthentication_max_age,
        seconds(600)
    );
    let s = effective(&rig, "user_first", &child.id).await;
    assert_eq!(provenance(&s, age), (SettingSource::Organization, false));
    let cleared = c
        .update_security_policy(rig.as_user_mfa("user_first", set_age(None)))
        .await
        .unwrap()
        .into_inner()
        .security_policy
        .unwrap();
    assert_eq!(cleared.reauthentication_max_age, seconds(900));
    assert_eq!(cleared.etag, "v2");
    let s = effective(&rig, "user_first", &child.id).await;
    assert_eq!(provenance(&s, age), (SettingSource::Operator, false));

    // ENFORCED: the operator requires MFA and locks it; one SecurityPolicyChanged for the
    // operator and one for the child, each with the policy in force.
    let enforce = c
        .update_security_policy(rig.as_user_mfa(
            "user_op",
            policy_update(&op.id, &["mfa_requirement", "enforced_fields"], |p| {
                p.mfa_requirement = MfaRequirement::Required as i32;
                p.enforced_fields = vec!["mfa_requirement".into()];
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        enforce.security_policy.as_ref().unwrap().enforced_fields,
        vec!["mfa_requirement"]
    );
    let events = watch(&rig, enforce.revision - 2, 2).await;
    let changed: Vec<(String, SecurityPolicy)> = events
        .iter()
        .filter(|e| e.revision > enforce.revision - 2)
        .filter_map(|e| match &e.payload {
            Some(Payload::SecurityPolicyChanged(p)) => Some((
                p.organization_id.clone(),
                p.security_policy.clone().unwrap(),
            )),
            _ => None,
        })
        .collect();
    let ids: Vec<&str> = changed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, vec![op.id.as_str(), child.id.as_str()], "{events:?}");
    for (_, p) in &changed {
        assert_eq!(p.mfa_requirement, MfaRequirement::Required as i32);
    }
    assert_eq!(changed[1].1.reauthentication_max_age, seconds(900));

    // The role snapshot (what other services re-sync from) carries the child's policy in force.
    let snapshot = c
        .list_role_assignments(rig.as_service(ListRoleAssignmentsRequest {
            page_size: 1000,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let in_snapshot = snapshot
        .organizations
        .into_iter()
        .find(|o| o.organization.as_ref().unwrap().id == child.id)
        .unwrap()
        .security_policy
        .unwrap();
    assert_eq!(in_snapshot, changed[1].1);

    // The child's member without a second factor is refused in the child only.
    let get = |org: &str| GetSecurityPolicyRequest {
        organization_id: org.into(),
    };
    refusal(
        c.get_security_policy(rig.as_user("user_first", get(&child.id)))
            .await,
        Code::Unauthenticated,
        "MFA_REQUIRED",
    );
    let elsewhere = create_org_of_kind(&rig, "user_first", "Own", OrganizationKind::Standard).await;
    c.get_security_policy(rig.as_user("user_first", get(&elsewhere.id)))
        .await
        .unwrap();

    // The child's OWNER cannot override or clear the ENFORCED field; other fields stay its own.
    for value in [MfaRequirement::Optional, MfaRequirement::Unspecified] {
        let d = refusal(
            c.update_security_policy(rig.as_user_mfa(
                "user_first",
                policy_update(&child.id, &["mfa_requirement"], |p| {
                    p.mfa_requirement = value as i32
                }),
            ))
            .await,
            Code::FailedPrecondition,
            "SETTING_ENFORCED_BY_OPERATOR",
        );
        assert_eq!(d.metadata["field"], "mfa_requirement");
        assert_eq!(d.metadata["operator_organization_id"], op.id);
    }
    let s = effective(&rig, "user_first", &child.id).await;
    assert_eq!(provenance(&s, mfa), (SettingSource::Operator, true));
    assert_eq!(
        s.security_policy.as_ref().unwrap().mfa_requirement,
        MfaRequirement::Required as i32
    );

    // enforced_fields only for operators; unknown or repeated names are bad input.
    refusal(
        c.update_security_policy(rig.as_user_mfa(
            "user_first",
            policy_update(&child.id, &["enforced_fields"], |p| {
                p.enforced_fields = vec!["reauthentication_max_age".into()]
            }),
        ))
        .await,
        Code::FailedPrecondition,
        "NOT_AN_OPERATOR",
    );
    for bad in [
        vec!["restrict_invites_to_verified_domains".to_owned()],
        vec!["mfa_requirement".into(), "mfa_requirement".into()],
    ] {
        let d = refusal(
            c.update_security_policy(rig.as_user_mfa(
                "user_op",
                policy_update(&op.id, &["enforced_fields"], |p| p.enforced_fields = bad),
            ))
            .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(d.field_violations[0].0, "security_policy.enforced_fields");
    }

    // Authentication per child: the operator's OWNER sets the child's sign-in methods, audited
    // in the child's log as the operator.
    let by_operator = c
        .update_security_policy(rig.as_user_mfa(
            "user_op",
            policy_update(&child.id, &["allowed_sign_in_methods"], |p| {
                p.allowed_sign_in_methods = vec![SignInMethod::Password as i32]
            }),
        ))
        .await
        .unwrap()
        .into_inner()
        .security_policy
        .unwrap();
    assert_eq!(
        by_operator.allowed_sign_in_methods,
        vec![SignInMethod::Password as i32]
    );
    let log = rig
        .client()
        .list_audit_events(rig.as_user_mfa(
            "user_op",
            ListAuditEventsRequest {
                organization_id: child.id.clone(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let record = log
        .iter()
        .find(|e| e.action == "security_policy.update" && e.actor_id == "user_op")
        .unwrap_or_else(|| panic!("{log:?}"));
    assert_eq!(record.actor_kind, ActorKind::Operator as i32);
    assert_eq!(record.actor_organization_id, op.id);
    // The enforced field stays refused to the operator acting in the child too.
    refusal(
        c.update_security_policy(rig.as_user_mfa(
            "user_op",
            policy_update(&child.id, &["mfa_requirement"], |p| {
                p.mfa_requirement = MfaRequirement::Optional as i32
            }),
        ))
        .await,
        Code::FailedPrecondition,
        "SETTING_ENFORCED_BY_OPERATOR",
    );
}

#[tokio::test]
async fn org_13_policy_inherits_per_field_overrides_clears_and_enforces_sqlite() {
    policy_inheritance(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_13_policy_inherits_per_field_overrides_clears_and_enforces_postgres() {
    policy_inheritance(Backend::Postgres).await;
}

/// The `From:` line of the invite mail sent to `to`.
fn mail_from_line(rig: &Rig, to: &str) -> String {
    for f in std::fs::read_dir(rig.mail_dir.path()).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        if text.contains(&format!("To: {to}")) {
            return text
                .lines()
                .find(|l| l.starts_with("From:"))
                .unwrap()
                .to_owned();
        }
    }
    panic!("no mail to {to}");
}

#[tokio::test]
async fn org_13_branding_inherits_validates_enforces_and_brands_invite_mail() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let mut c = rig.client();
    let op = create_operator(&rig, "user_op", "Operator").await;
    let op_branding = c
        .update_branding(rig.as_user(
            "user_op",
            branding_update(
                &op.id,
                &["mail_sender_name", "primary_color", "enforced_fields"],
                |b| {
                    b.mail_sender_name = "Op Mail".into();
                    b.primary_color = "#AABBCC".into();
                    b.enforced_fields = vec!["primary_color".into()];
                },
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .branding
        .unwrap();
    assert_eq!(op_branding.primary_color, "#aabbcc");
    assert_eq!(op_branding.display_name, "Orgplane", "the system default");
    assert_eq!(op_branding.etag, "v1");

    // The child inherits: its owner's invite comes from the operator's sender name.
    let created = create_child(&rig, "user_op", &op.id, "Child", "user_first").await;
    let child = created.organization.unwrap();
    assert!(
        mail_from_line(&rig, "user_first@example.com").contains("Op Mail"),
        "{}",
        mail_from_line(&rig, "user_first@example.com")
    );
    accept(&rig, "user_first", &created.owner_invite.unwrap().id).await;
    let s = effective(&rig, "user_first", &child.id).await;
    let b = s.branding.clone().unwrap();
    assert_eq!(
        (
            b.display_name.as_str(),
            b.primary_color.as_str(),
            b.mail_sender_name.as_str()
        ),
        ("Orgplane", "#aabbcc", "Op Mail")
    );
    assert_eq!(b.etag, "v0");
    assert_eq!(
        provenance(&s, "branding.display_name"),
        (SettingSource::System, false)
    );
    assert_eq!(
        provenance(&s, "branding.mail_sender_name"),
        (SettingSource::Operator, false)
    );
    assert_eq!(
        provenance(&s, "branding.primary_color"),
        (SettingSource::Operator, true)
    );

    // The child's own sender name wins, and brands its invite mail.
    let revision = c
        .update_branding(rig.as_user(
            "user_first",
            branding_update(&child.id, &["mail_sender_name", "logo_uri"], |b| {
                b.mail_sender_name = "Child Mail".into();
                b.logo_uri = "https://cdn.example.com/child.png".into();
            }),
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    c.create_invite(rig.as_user(
        "user_first",
        CreateInviteRequest {
            organization_id: child.id.clone(),
            invite: Some(Invite {
                email: "user_new@example.com".into(),
                role: OrgRole::User as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    let from = mail_from_line(&rig, "user_new@example.com");
    assert!(
        from.contains("Child Mail") && from.contains("no-reply@orgplane.dev"),
        "{from}"
    );
    let s = effective(&rig, "user_first", &child.id).await;
    assert_eq!(
        provenance(&s, "branding.mail_sender_name"),
        (SettingSource::Organization, false)
    );

    // The ENFORCED colour is refused to the child, with the field and the operator.
    let d = refusal(
        c.update_branding(rig.as_user(
            "user_first",
            branding_update(&child.id, &["primary_color"], |b| {
                b.primary_color = "#000000".into()
            }),
        ))
        .await,
        Code::FailedPrecondition,
        "SETTING_ENFORCED_BY_OPERATOR",
    );
    assert_eq!(d.metadata["field"], "primary_color");
    assert_eq!(d.metadata["operator_organization_id"], op.id);
    refusal(
        c.update_branding(rig.as_user(
            "user_first",
            branding_update(&child.id, &["enforced_fields"], |_| {}),
        ))
        .await,
        Code::FailedPrecondition,
        "NOT_AN_OPERATOR",
    );

    // Validation names the field; nothing changes.
    let cases: Vec<(&str, String)> = vec![
        ("display_name", "x".repeat(101)),
        ("display_name", "a\u{7}b".into()),
        ("mail_sender_name", "x".repeat(101)),
        ("logo_uri", "http://cdn.example.com/a.png".into()),
        (
            "icon_uri",
            format!("https://example.com/{}", "a".repeat(2040)),
        ),
        ("accent_color", "red".into()),
        ("accent_color", "#12345".into()),
    ];
    for (field, value) in cases {
        let d = refusal(
            c.update_branding(rig.as_user(
                "user_first",
                branding_update(&child.id, &[field], |b| match field {
                    "display_name" => b.display_name = value.clone(),
                    "mail_sender_name" => b.mail_sender_name = value.clone(),
                    "logo_uri" => b.logo_uri = value.clone(),
                    "icon_uri" => b.icon_uri = value.clone(),
                    _ => b.accent_color = value.clone(),
                }),
            ))
            .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(d.field_violations[0].0, format!("branding.{field}"));
    }
    let mut stale = branding_update(&child.id, &["display_name"], |b| {
        b.display_name = "C".into()
    });
    stale.etag = "v0".into();
    refusal(
        c.update_branding(rig.as_user("user_first", stale)).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    // A member without the role cannot change it.
    common::add_member(
        &rig,
        &child.id,
        "user_first",
        "user_dev",
        OrgRole::Developer,
    )
    .await;
    refusal(
        c.update_branding(rig.as_user(
            "user_dev",
            branding_update(&child.id, &["display_name"], |b| {
                b.display_name = "C".into()
            }),
        ))
        .await,
        Code::PermissionDenied,
        "INSUFFICIENT_ROLE",
    );

    // The operator's change reaches the child that inherits the field (BrandingChanged for
    // both), not a field the child overrides; clearing the child's value inherits again.
    let after = c
        .update_branding(rig.as_user(
            "user_op",
            branding_update(&op.id, &["mail_sender_name", "display_name"], |b| {
                b.mail_sender_name = "Op Mail 2".into();
                b.display_name = "Op Brand".into();
            }),
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    let events = watch(&rig, revision, 10).await;
    let changed: Vec<Branding> = events
        .iter()
        .filter(|e| e.revision > revision && e.revision <= after)
        .filter_map(|e| match &e.payload {
            Some(Payload::BrandingChanged(b)) => b.branding.clone(),
            _ => None,
        })
        .collect();
    let ids: Vec<&str> = changed.iter().map(|b| b.organization_id.as_str()).collect();
    assert!(
        ids.contains(&op.id.as_str()) && ids.contains(&child.id.as_str()),
        "{ids:?}"
    );
    let child_event = changed
        .iter()
        .find(|b| b.organization_id == child.id)
        .unwrap();
    assert_eq!(child_event.display_name, "Op Brand");
    assert_eq!(child_event.mail_sender_name, "Child Mail");
    let cleared = c
        .update_branding(rig.as_user(
            "user_first",
            branding_update(&child.id, &["mail_sender_name"], |_| {}),
        ))
        .await
        .unwrap()
        .into_inner()
        .branding
        .unwrap();
    assert_eq!(cleared.mail_sender_name, "Op Mail 2");
    assert_eq!(cleared.logo_uri, "https://cdn.example.com/child.png");

    // Reads: the operator's OWNER and a service read the child's branding; an outsider cannot.
    let get = || GetBrandingRequest {
        organization_id: child.id.clone(),
    };
    for req in [rig.as_user("user_op", get()), rig.as_service(get())] {
        let b = c
            .get_branding(req)
            .await
            .unwrap()
            .into_inner()
            .branding
            .unwrap();
        assert_eq!(b.mail_sender_name, "Op Mail 2");
    }
    refusal(
        c.get_branding(rig.as_user("user_outsider", get())).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    // The operator acting in the child is audited as such.
    c.update_branding(rig.as_user(
        "user_op",
        branding_update(&child.id, &["icon_uri"], |b| {
            b.icon_uri = "https://cdn.example.com/i.png".into()
        }),
    ))
    .await
    .unwrap();
    let log = audit_of(&rig, "user_op", &child.id).await;
    let record = log
        .iter()
        .find(|e| e.action == "branding.update" && e.actor_id == "user_op")
        .unwrap_or_else(|| panic!("{log:?}"));
    assert_eq!(record.actor_kind, ActorKind::Operator as i32);
    assert_eq!(record.actor_organization_id, op.id);
}
