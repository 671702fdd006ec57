//! The security policy of operators and children (rules ORG-13, ORG-16).

use orgplane_proto::audit::v1::ActorKind;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::create_org_of_kind;
use crate::harness::{Backend, Rig};
use crate::helpers::*;

async fn policy_inheritance(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let (op, child) = operator_and_child(&rig).await;
    let mut c = rig.client();
    let age = "security_policy.reauthentication_max_age";
    let mfa = "security_policy.mfa_requirement";

    // Nothing set anywhere: the system defaults; one entry per inherited field.
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

    // The step-up age in force is the operator's: a sign-in 400 s old (past the system's 300)
    // may still change the child's policy; one 1000 s old may not.
    let restrict = || policy_update(&child.id, &["restrict_invites_to_verified_domains"], |_| {});
    c.update_security_policy(rig.as_user_signed_in_ago("user_first", 400, restrict()))
        .await
        .unwrap();
    refusal(
        c.update_security_policy(rig.as_user_signed_in_ago("user_first", 1000, restrict()))
            .await,
        Code::Unauthenticated,
        "REAUTHENTICATION_REQUIRED",
    );

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
    assert_eq!(cleared.etag, "v3");
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
    let events = rig.events_after(enforce.revision - 2, 2).await;
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

/// ORG-13 with ORG-16: the operator acting in a child is judged as the OWNER or ADMIN it is in
/// the operator. Under REQUIRED_FOR_PRIVILEGED_ROLES in the child, its password-only sign-in is
/// refused there (as the child's own admins' would be) and admitted with a second factor; the
/// child's OWNER, privileged too, likewise.
#[tokio::test]
async fn org_13_the_operator_in_a_child_is_judged_as_a_privileged_role_sqlite() {
    let Some(rig) = Rig::new(Backend::Sqlite).await else {
        return;
    };
    let (_op, child) = operator_and_child(&rig).await;
    let mut c = rig.client();
    c.update_security_policy(rig.as_user_mfa(
        "user_op",
        policy_update(&child.id, &["mfa_requirement"], |p| {
            p.mfa_requirement = MfaRequirement::RequiredForPrivilegedRoles as i32
        }),
    ))
    .await
    .unwrap();
    let get = || GetOrganizationRequest {
        organization_id: child.id.clone(),
    };
    for user in ["user_op", "user_first"] {
        refusal(
            c.get_organization(rig.as_user(user, get())).await,
            Code::Unauthenticated,
            "MFA_REQUIRED",
        );
        c.get_organization(rig.as_user_mfa(user, get()))
            .await
            .unwrap();
    }
}

/// ORG-13 with ORG-16: a child awaiting its first owner has no members, yet the role snapshot
/// carries it (with the policy its operator enforces), exactly once whatever the page size, so
/// that a consumer re-syncing from the snapshot knows it (and enforces its policy) when the owner
/// joins.
#[tokio::test]
async fn org_13_the_snapshot_carries_children_without_members_once_with_their_policy() {
    let Some(rig) = Rig::new(Backend::Sqlite).await else {
        return;
    };
    let op = crate::common::create_operator(&rig, "user_op", "Operator").await;
    for i in 0..3 {
        crate::common::create_child(&rig, "user_op", &op.id, &format!("Child {i}"), "user_x").await;
    }
    let mut c = rig.client();
    c.update_security_policy(rig.as_user_mfa(
        "user_op",
        policy_update(&op.id, &["mfa_requirement", "enforced_fields"], |p| {
            p.mfa_requirement = MfaRequirement::Required as i32;
            p.enforced_fields = vec!["mfa_requirement".into()];
        }),
    ))
    .await
    .unwrap();
    for page_size in [1, 2, 1000] {
        let mut token = String::new();
        let mut seen: Vec<(String, usize, i32)> = Vec::new();
        loop {
            let page = c
                .list_role_assignments(rig.as_service(ListRoleAssignmentsRequest {
                    page_size,
                    page_token: token.clone(),
                }))
                .await
                .unwrap()
                .into_inner();
            for o in page.organizations {
                let org = o.organization.unwrap();
                seen.push((
                    org.id,
                    o.role_assignments.len(),
                    o.security_policy.unwrap().mfa_requirement,
                ));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let children: Vec<&(String, usize, i32)> =
            seen.iter().filter(|(id, _, _)| *id != op.id).collect();
        assert_eq!(children.len(), 3, "page size {page_size}: {seen:?}");
        for (_, roles, mfa) in children {
            assert_eq!(*roles, 0);
            assert_eq!(*mfa, MfaRequirement::Required as i32);
        }
        let mut ids: Vec<&String> = seen.iter().map(|(id, _, _)| id).collect();
        ids.dedup();
        assert!(ids.contains(&&op.id), "page size {page_size}: {seen:?}");
    }
}

/// ORG-13: a child created after its operator enforced MFA publishes its policy in force with
/// its creation, so that the other services (whose replicas know no operators) enforce it from
/// the child's first member on.
#[tokio::test]
async fn org_13_a_new_child_publishes_the_policy_it_inherits() {
    let Some(rig) = Rig::new(Backend::Sqlite).await else {
        return;
    };
    let op = crate::common::create_operator(&rig, "user_op", "Operator").await;
    rig.client()
        .update_security_policy(rig.as_user_mfa(
            "user_op",
            policy_update(&op.id, &["mfa_requirement", "enforced_fields"], |p| {
                p.mfa_requirement = MfaRequirement::Required as i32;
                p.enforced_fields = vec!["mfa_requirement".into()];
            }),
        ))
        .await
        .unwrap();
    let created = rig
        .client()
        .create_child_organization(rig.as_user_mfa(
            "user_op",
            crate::common::child_request(&op.id, "Late", "late@example.com", ""),
        ))
        .await
        .unwrap()
        .into_inner();
    let child = created.organization.unwrap();
    let events = rig.events_after(created.revision - 3, 3).await;
    let policy = events
        .iter()
        .filter(|e| e.revision <= created.revision)
        .find_map(|e| match &e.payload {
            Some(Payload::SecurityPolicyChanged(p)) if p.organization_id == child.id => {
                p.security_policy.clone()
            }
            _ => None,
        })
        .expect("the child's policy in force is published with its creation");
    assert_eq!(policy.mfa_requirement, MfaRequirement::Required as i32);
}

/// ORG-13, expand/contract: the release before ORG-13 reads `mfa_requirement`,
/// `reauth_max_age_secs` and `sign_in_methods` as the whole policy. Own values live in their own
/// columns (0 inherits), and those three keep the complete policy in force, so that a row written
/// by this release (one field set, or one cleared) never reads as "no sign-in method allowed" or
/// "re-authenticate always" to a previous-release replica during a rolling update.
#[tokio::test]
async fn org_13_policy_rows_stay_complete_for_the_previous_release() {
    use orgplane_organization::store::security_policy;
    use orgplane_platform::policy::SecurityPolicy as Enforced;
    use sea_orm::EntityTrait;
    let Some(rig) = Rig::new(Backend::Sqlite).await else {
        return;
    };
    let org = create_org_of_kind(&rig, "user_o", "Plain", OrganizationKind::Standard).await;
    let row = || async {
        security_policy::Entity::find_by_id(org.id.clone())
            .one(rig.org.db())
            .await
            .unwrap()
            .unwrap()
    };
    let mut c = rig.client();
    // One field set on a fresh organization: the row holds the other two in force too.
    c.update_security_policy(rig.as_user_mfa(
        "user_o",
        policy_update(&org.id, &["reauthentication_max_age"], |p| {
            p.reauthentication_max_age = seconds(900)
        }),
    ))
    .await
    .unwrap();
    let r = row().await;
    assert_eq!((r.own_mfa_requirement, r.own_sign_in_methods), (0, 0));
    let previous =
        Enforced::from_parts(r.mfa_requirement, r.reauth_max_age_secs, r.sign_in_methods);
    assert_eq!(previous, Enforced::with_reauth_max_age(900), "{r:?}");
    // Cleared again: the own value is 0, the complete column the system default.
    c.update_security_policy(rig.as_user_mfa(
        "user_o",
        policy_update(&org.id, &["reauthentication_max_age"], |p| {
            p.reauthentication_max_age = None
        }),
    ))
    .await
    .unwrap();
    let r = row().await;
    assert_eq!(r.own_reauth_max_age_secs, 0);
    let previous =
        Enforced::from_parts(r.mfa_requirement, r.reauth_max_age_secs, r.sign_in_methods);
    assert_eq!(previous, Enforced::with_reauth_max_age(300), "{r:?}");
}
