//! Branding of operators and children, and the invite mail it brands (rule ORG-13).

use orgplane_proto::audit::v1::ActorKind;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::{accept, create_child, create_operator};
use crate::harness::{Backend, Rig};
use crate::helpers::*;

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
    rig.add_member(&child.id, "user_first", "user_dev", OrgRole::Developer)
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
    let events = rig.events_after(revision, 10).await;
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
    let log = rig.audit_log("user_op", &child.id).await;
    let record = log
        .iter()
        .find(|e| e.action == "branding.update" && e.actor_id == "user_op")
        .unwrap_or_else(|| panic!("{log:?}"));
    assert_eq!(record.actor_kind, ActorKind::Operator as i32);
    assert_eq!(record.actor_organization_id, op.id);
}
