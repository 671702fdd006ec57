//! ORG-5 role changes through group commit (on SQLite, concurrent UpdateMemberRole calls share
//! one transaction): every change is kept with a revision of its own, and of two changes racing
//! on one member with the same etag exactly one wins — the version condition holds inside the
//! group as it did across separate transactions.

use super::*;

/// UpdateMemberRole of `user` to `role` by `caller`.
async fn update_as(
    rig: &Rig,
    caller: &str,
    org: &str,
    user: &str,
    role: OrgRole,
    etag: &str,
) -> Result<UpdateMemberRoleResponse, tonic::Status> {
    rig.client()
        .update_member_role(rig.as_user(
            caller,
            UpdateMemberRoleRequest {
                organization_id: org.into(),
                user_id: user.into(),
                role: role as i32,
                etag: etag.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn change(
    rig: &Rig,
    org: &str,
    user: &str,
    role: OrgRole,
    etag: &str,
) -> Result<i64, tonic::Status> {
    update_as(rig, "user_owner", org, user, role, etag)
        .await
        .map(|r| r.revision)
}

async fn org_5_concurrent_role_changes_each_land_once(backend: Backend) {
    let rig = Rig::new(backend).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    let users: Vec<String> = (0..24).map(|i| format!("user_m{i}")).collect();
    for u in &users {
        rig.add_member(&org.id, "user_owner", u, OrgRole::User)
            .await;
    }
    let racer = rig
        .client()
        .get_member(rig.as_user(
            "user_owner",
            GetMemberRequest {
                organization_id: org.id.clone(),
                user_id: users[0].clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    // Every member but the first changes once; the first gets two changes with the same etag.
    let mut calls = Vec::new();
    for u in &users[1..] {
        calls.push(change(&rig, &org.id, u, OrgRole::Developer, ""));
    }
    calls.push(change(
        &rig,
        &org.id,
        &users[0],
        OrgRole::Developer,
        &racer.etag,
    ));
    calls.push(change(
        &rig,
        &org.id,
        &users[0],
        OrgRole::Billing,
        &racer.etag,
    ));
    let results = futures::future::join_all(calls).await;
    let (ok, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    assert_eq!(ok.len(), users.len(), "one change per member: {refused:?}");
    assert_eq!(
        refused.len(),
        1,
        "the racing change with a stale etag is refused"
    );
    let status = refused[0].as_ref().unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(
        reason_of(status).as_deref(),
        Some("ETAG_MISMATCH"),
        "{status:?}"
    );
    let revisions: HashSet<i64> = ok.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        revisions.len(),
        users.len(),
        "a revision of its own for every change"
    );

    let members = rig
        .client()
        .list_members(rig.as_user(
            "user_owner",
            ListMembersRequest {
                organization_id: org.id.clone(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    for m in members.iter().filter(|m| users[1..].contains(&m.user_id)) {
        assert_eq!(m.role, OrgRole::Developer as i32, "{}", m.user_id);
    }
    let first = members.iter().find(|m| m.user_id == users[0]).unwrap();
    assert!(
        [OrgRole::Developer as i32, OrgRole::Billing as i32].contains(&first.role),
        "{first:?}"
    );
}

#[tokio::test]
async fn org_5_concurrent_role_changes_each_land_once_sqlite() {
    org_5_concurrent_role_changes_each_land_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_5_concurrent_role_changes_each_land_once_postgres() {
    org_5_concurrent_role_changes_each_land_once(Backend::Postgres).await;
}

/// The changed member is answered with its name, looked up while the change commits: from this
/// service's copy of identity's profiles, or, for a user it has no copy of yet (an account older
/// than the copy), from identity, which fills the copy in. Identity being down does not fail a
/// change that was made: a user without a copy is answered with the stored email and no name. A
/// change that fails answers its own error.
#[tokio::test]
async fn org_5_a_role_change_answers_the_member_with_its_name_or_without_it_when_identity_is_down()
{
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let org = create_org(&rig, "user_owner", "Acme").await;
    for user in ["user_m", "user_n"] {
        rig.add_member(&org.id, "user_owner", user, OrgRole::User)
            .await;
    }
    let update = |user: &'static str, role: OrgRole, etag: String| {
        let (rig, org) = (&rig, &org);
        async move { update_as(rig, "user_owner", &org.id, user, role, &etag).await }
    };
    forget_profiles(&rig).await;
    let named = update("user_m", OrgRole::Developer, String::new())
        .await
        .unwrap()
        .member
        .unwrap();
    assert_eq!(named.role, OrgRole::Developer as i32);
    assert_eq!(named.display_name, "Name of user_m");
    assert_eq!(named.email, "user_m@example.com");

    rig.identity
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // user_m's profile was copied by the first answer; user_n has none.
    let copied = update("user_m", OrgRole::Billing, String::new())
        .await
        .unwrap()
        .member
        .unwrap();
    assert_eq!(copied.role, OrgRole::Billing as i32);
    assert_eq!(copied.display_name, "Name of user_m");
    let unnamed = update("user_n", OrgRole::Billing, String::new())
        .await
        .unwrap()
        .member
        .unwrap();
    assert_eq!(unnamed.role, OrgRole::Billing as i32);
    assert_eq!(unnamed.display_name, "");
    assert_eq!(unnamed.email, "user_n@example.com");
    let stale = update("user_m", OrgRole::User, named.etag.clone())
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");

    rig.identity
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let kept = get_member(&rig, &org.id, "user_n").await.unwrap();
    assert_eq!(kept.role, OrgRole::Billing as i32);
    assert_eq!(kept.display_name, "Name of user_n");
}

/// Empties the service's copy of identity's profiles: every member's user is then as an account
/// older than the copy.
async fn forget_profiles(rig: &Rig) {
    use sea_orm::ConnectionTrait;
    rig.org
        .db()
        .execute_unprepared("DELETE FROM user_profiles")
        .await
        .unwrap();
}

/// GetMember of `user` as the OWNER.
async fn get_member(rig: &Rig, org: &str, user: &str) -> Result<Member, tonic::Status> {
    rig.client()
        .get_member(rig.as_user(
            "user_owner",
            GetMemberRequest {
                organization_id: org.into(),
                user_id: user.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().member.unwrap())
}

/// Members are named from identity's `UserProfileChanged` events, in the order identity
/// published them, without asking identity: with identity down, GetMember and ListMembers answer
/// the latest published name and email (the fake identity would answer another name). A user's
/// deletion forgets the profile.
async fn org_5_members_are_named_from_identity_profile_events(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_m", OrgRole::Developer)
        .await;
    let profile = |user: &str, name: &str, email: &str| {
        Payload::UserProfileChanged(UserProfileChanged {
            user_id: user.into(),
            display_name: name.into(),
            email: email.into(),
        })
    };
    rig.publish_identity(profile("user_owner", "Olivia", "olivia@example.com"))
        .await;
    rig.publish_identity(profile("user_m", "Mara", "mara@example.com"))
        .await;
    let last = rig
        .publish_identity(profile("user_m", "Mara Renamed", "Mara@New.example"))
        .await;
    rig.org
        .identity_events()
        .wait_for(last, Duration::from_secs(10))
        .await
        .unwrap();
    rig.identity
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let m = get_member(&rig, &org.id, "user_m").await.unwrap();
    assert_eq!(
        (m.display_name.as_str(), m.email.as_str()),
        ("Mara Renamed", "Mara@New.example")
    );
    let listed = rig
        .client()
        .list_members(rig.as_user(
            "user_owner",
            ListMembersRequest {
                organization_id: org.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|m| (m.user_id.as_str(), m.display_name.as_str()))
        .collect();
    assert_eq!(
        names,
        [("user_owner", "Olivia"), ("user_m", "Mara Renamed")]
    );

    rig.identity
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let gone = rig
        .publish_identity(Payload::UserDeleted(UserDeleted {
            user_id: "user_m".into(),
        }))
        .await;
    rig.org
        .identity_events()
        .wait_for(gone, Duration::from_secs(10))
        .await
        .unwrap();
    use sea_orm::{ConnectionTrait, Statement};
    let left = rig
        .org
        .db()
        .query_one_raw(Statement::from_string(
            rig.org.db().get_database_backend(),
            "SELECT COUNT(*) AS n FROM user_profiles WHERE user_id = 'user_m'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(left, 0, "a deleted user's profile is forgotten");
}

#[tokio::test]
async fn org_5_members_are_named_from_identity_profile_events_sqlite() {
    org_5_members_are_named_from_identity_profile_events(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_5_members_are_named_from_identity_profile_events_postgres() {
    org_5_members_are_named_from_identity_profile_events(Backend::Postgres).await;
}

/// One statement reads the organization, the caller's membership, its policy and the member a
/// call names (GetMember, UpdateMemberRole, RemoveMember); what a caller learns still follows the order of the checks: an outsider learns
/// nothing of the organization, a member without the role is refused before it learns whether
/// the member exists, and the policy read with them is enforced (ORG-16).
async fn org_5_member_calls_judge_the_caller_before_the_member(backend: Backend) {
    let Some(rig) = Rig::new(backend).await else {
        return;
    };
    let org = create_org(&rig, "user_owner", "Acme").await;
    rig.add_member(&org.id, "user_owner", "user_dev", OrgRole::Developer)
        .await;
    rig.add_member(&org.id, "user_owner", "user_admin", OrgRole::Admin)
        .await;
    let get = |caller: &str, user: &str| {
        let request = rig.as_user(
            caller,
            GetMemberRequest {
                organization_id: org.id.clone(),
                user_id: user.into(),
            },
        );
        let mut client = rig.client();
        async move { client.get_member(request).await }
    };
    let update = |caller, user| update_as(&rig, caller, &org.id, user, OrgRole::Billing, "");
    // Found, for a member of any role.
    let dev = get("user_dev", "user_admin").await.unwrap().into_inner();
    assert_eq!(dev.member.unwrap().role, OrgRole::Admin as i32);
    // An unknown member, asked by a member: NOT_FOUND of the member.
    let e = get("user_dev", "user_nobody").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().starts_with("member "), "{e:?}");
    // An outsider: NOT_FOUND of the organization, whoever it names.
    for user in ["user_admin", "user_nobody"] {
        let e = get("user_outsider", user).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.message().starts_with("organization "), "{e:?}");
        let e = update("user_outsider", user).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.message().starts_with("organization "), "{e:?}");
    }
    // A DEVELOPER may not change roles: refused, whether the member exists or not.
    for user in ["user_admin", "user_nobody"] {
        let e = update("user_dev", user).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{user}: {e:?}");
    }
    let e = update("user_owner", "user_nobody").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().starts_with("member "), "{e:?}");
    // RemoveMember reads the member with the access too, and judges in the same order.
    let remove = |caller: &str, user: &str| {
        let request = rig.as_user(
            caller,
            RemoveMemberRequest {
                organization_id: org.id.clone(),
                user_id: user.into(),
            },
        );
        let mut client = rig.client();
        async move { client.remove_member(request).await }
    };
    let e = remove("user_outsider", "user_admin").await.unwrap_err();
    assert!(e.message().starts_with("organization "), "{e:?}");
    for user in ["user_admin", "user_nobody"] {
        let e = remove("user_dev", user).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{user}: {e:?}");
    }
    let e = remove("user_owner", "user_nobody").await.unwrap_err();
    assert!(e.message().starts_with("member "), "{e:?}");
    let e = remove("user_nobody", "me").await.unwrap_err();
    assert!(e.message().starts_with("organization "), "{e:?}");
    let changed = update("user_owner", "user_dev").await.unwrap();
    assert_eq!(changed.member.unwrap().role, OrgRole::Billing as i32);
    // The policy comes with the same read: privileged roles need a second factor now.
    require_mfa(
        &rig,
        &org.id,
        "user_owner",
        MfaRequirement::RequiredForPrivilegedRoles,
    )
    .await;
    refusal(
        get("user_admin", "user_dev").await,
        Code::Unauthenticated,
        "MFA_REQUIRED",
    );
    // user_dev is BILLING now: privileged as well.
    refusal(
        get("user_dev", "user_admin").await,
        Code::Unauthenticated,
        "MFA_REQUIRED",
    );
}

#[tokio::test]
async fn org_5_member_calls_judge_the_caller_before_the_member_sqlite() {
    org_5_member_calls_judge_the_caller_before_the_member(Backend::Sqlite).await;
}

#[tokio::test]
async fn org_5_member_calls_judge_the_caller_before_the_member_postgres() {
    org_5_member_calls_judge_the_caller_before_the_member(Backend::Postgres).await;
}
