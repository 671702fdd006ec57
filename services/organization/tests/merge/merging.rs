//! ORG-15's merge: conflicts and their resolution, the preview against the merge and the state
//! after it, roles, the tombstone, the event, the audit records and idempotent retries.

use std::collections::HashMap;

use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::organization::v1::*;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;
use crate::harness::details;

#[tokio::test]
async fn org_15_conflicts_block_the_merge_until_they_are_resolved() {
    let configure = |c: &mut orgplane_organization::Config| {
        c.max_accounts = 2;
        c.merge_max_active_workspaces = 2;
    };
    for (backend, env) in each_env(configure).await {
        let (prime, candidate) = ready_pair(&env).await;
        let ws = &env.workspaces;
        ws.add(&prime, "wrkspc_p1", "Prod", false);
        ws.add(&prime, "wrkspc_p2", "old", false);
        ws.add(&candidate, "wrkspc_c1", "PROD", false);
        ws.add(&candidate, "wrkspc_c2", "Old", true);
        let sales = create_unit(&env, "user_o", &prime, "Sales", "").await;
        let c_sales = create_unit(&env, "user_o", &candidate, "sales", "").await;
        join(&env, &prime, "user_o", "user_m", OrgRole::User).await;
        join(&env, &candidate, "user_o", "user_m", OrgRole::Developer).await;
        create_account(&env, "user_o", &prime, "P1").await;
        create_account(&env, "user_o", &candidate, "C1").await;
        let c2 = create_account(&env, "user_o", &candidate, "C2").await;

        let preview = merge(&env, "user_o", merge_req(&prime, &candidate, true))
            .await
            .unwrap();
        let plan = preview.plan.unwrap();
        use MergeConflictKind::*;
        assert_eq!(
            kinds(&plan.conflicts),
            [
                WorkspaceName,
                UnitName,
                MemberInBoth,
                MemberInBoth,
                AccountLimit,
                WorkspaceLimit
            ],
            "{backend:?}: {:?}",
            plan.conflicts
        );
        let name = &plan.conflicts[0];
        assert_eq!(
            (
                name.candidate_resource_id.as_str(),
                name.prime_resource_id.as_str()
            ),
            ("wrkspc_c1", "wrkspc_p1")
        );
        let unit = &plan.conflicts[1];
        assert_eq!(
            (
                unit.candidate_resource_id.as_str(),
                unit.prime_resource_id.as_str()
            ),
            (c_sales.id.as_str(), sales.id.as_str())
        );
        assert!(!plan.conflicts[2].blocking && !plan.conflicts[3].blocking);

        // The merge refuses, listing each blocking conflict.
        let e = expect_err(
            merge(&env, "user_o", merge_req(&prime, &candidate, false)).await,
            Code::FailedPrecondition,
            "MERGE_CONFLICTS",
        );
        assert_eq!(details(&e).metadata["conflicts"], "4");
        let failure = e.get_details_precondition_failure().unwrap();
        let listed: Vec<(String, String)> = failure
            .violations
            .iter()
            .map(|v| (v.r#type.clone(), v.subject.clone()))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "MERGE_CONFLICT_KIND_WORKSPACE_NAME".into(),
                    "wrkspc_c1".into()
                ),
                ("MERGE_CONFLICT_KIND_UNIT_NAME".into(), c_sales.id.clone()),
                ("MERGE_CONFLICT_KIND_ACCOUNT_LIMIT".into(), String::new()),
                ("MERGE_CONFLICT_KIND_WORKSPACE_LIMIT".into(), String::new()),
            ]
        );
        for org in [&prime, &candidate] {
            let rows = audit_rows(&env, org, "organization.merge").await;
            assert!(
                rows.iter().any(|r| r.error_reason == "MERGE_CONFLICTS"),
                "{backend:?}: {rows:?}"
            );
        }

        // Resolved: a workspace renamed, another archived, the unit renamed, an account closed.
        ws.set("wrkspc_c1", |w| w.name = "Prod (candidate)".into());
        ws.set("wrkspc_p2", |w| w.state = 2);
        env.client()
            .update_unit(env.as_user(
                "user_o",
                UpdateUnitRequest {
                    unit: Some(Unit {
                        id: c_sales.id.clone(),
                        name: "Sales (candidate)".into(),
                        ..Default::default()
                    }),
                    update_mask: orgplane_platform::testkit::mask(&["name"]),
                    etag: String::new(),
                },
            ))
            .await
            .unwrap();
        accounts(&env)
            .close_account(env.as_user(
                "user_o",
                CloseAccountRequest {
                    account_id: c2.id.clone(),
                    organization_id: String::new(),
                    etag: String::new(),
                },
            ))
            .await
            .unwrap();
        let merged = merge(&env, "user_o", merge_req(&prime, &candidate, false))
            .await
            .unwrap();
        assert!(merged.merged, "{backend:?}");
        assert!(merged.plan.unwrap().conflicts.iter().all(|c| !c.blocking));
    }
}

/// A preview, the merge, and everything read afterwards agree; roles, the tombstone, the one
/// event, the audit records and a retry.
#[tokio::test]
async fn org_15_the_preview_equals_the_merge_and_the_state_after_it() {
    for (backend, env) in each_env(|_| {}).await {
        let (prime, candidate) = ready_pair(&env).await;
        join(&env, &candidate, "user_o", "user_a", OrgRole::Admin).await;
        join(&env, &candidate, "user_o", "user_b", OrgRole::Developer).await;
        join(&env, &prime, "user_o", "user_m", OrgRole::User).await;
        join(&env, &candidate, "user_o", "user_m", OrgRole::Billing).await;
        join(&env, &prime, "user_o", "user_n", OrgRole::Admin).await;
        join(&env, &candidate, "user_o", "user_n", OrgRole::User).await;
        let eng = create_unit(&env, "user_o", &candidate, "Eng", "").await;
        let backend_unit = create_unit(&env, "user_o", &candidate, "Backend", &eng.id).await;
        let acct = create_account(&env, "user_a", &candidate, "Main").await;
        let sub = accounts(&env)
            .create_subaccount(env.as_user(
                "user_a",
                CreateSubaccountRequest {
                    parent_account_id: acct.id.clone(),
                    subaccount: Some(Account {
                        display_name: "Sub".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .subaccount
            .unwrap();
        accounts(&env)
            .add_account_member(env.as_user(
                "user_o",
                AddAccountMemberRequest {
                    account_id: acct.id.clone(),
                    organization_id: candidate.clone(),
                    user_id: "user_b".into(),
                },
            ))
            .await
            .unwrap();
        let moving = invite(&env, &candidate, "user_o", "new@acme.test", OrgRole::User).await;
        let dropped = invite(&env, &candidate, "user_o", "twice@acme.test", OrgRole::User).await;
        invite(
            &env,
            &prime,
            "user_o",
            "twice@acme.test",
            OrgRole::Developer,
        )
        .await;
        env.workspaces.add(&candidate, "wrkspc_c2", "Legacy", true);
        env.workspaces.add(&candidate, "wrkspc_c1", "Api", false);
        env.workspaces.add(&prime, "wrkspc_p1", "Web", false);

        let preview = merge(&env, "user_o", merge_req(&prime, &candidate, true))
            .await
            .unwrap();
        assert!(!preview.merged);
        assert_eq!(preview.revision, 0);
        let head = env.org.outbox().head().await.unwrap().revision;
        let request_id = "6f1c2d3e-4b5a-4c6d-8e7f-901234567890";
        let req = MergeOrganizationsRequest {
            request_id: request_id.into(),
            ..merge_req(&prime, &candidate, false)
        };
        let done = merge(&env, "user_o", req.clone()).await.unwrap();
        assert!(done.merged, "{backend:?}");
        let plan = done.plan.clone().unwrap();
        assert_eq!(
            preview.plan.unwrap(),
            plan,
            "{backend:?}: the preview is the merge"
        );

        // Roles: the OWNER of both stays OWNER, a member of both keeps the higher role.
        let roles: HashMap<&str, (i32, i32, i32)> = plan
            .members
            .iter()
            .map(|m| {
                (
                    m.user_id.as_str(),
                    (m.candidate_role, m.prime_role, m.resulting_role),
                )
            })
            .collect();
        let r = |c: OrgRole, p: OrgRole, to: OrgRole| (c as i32, p as i32, to as i32);
        use OrgRole::*;
        assert_eq!(roles["user_o"], r(Owner, Owner, Owner));
        assert_eq!(roles["user_a"], r(Admin, Unspecified, Admin));
        assert_eq!(roles["user_b"], r(Developer, Unspecified, Developer));
        assert_eq!(roles["user_m"], r(Billing, User, Billing));
        assert_eq!(roles["user_n"], r(User, Admin, Admin));
        assert_eq!(roles.len(), 5);
        assert_eq!(plan.unit_ids, [eng.id.clone(), backend_unit.id.clone()]);
        let ws_ids: Vec<&str> = plan
            .workspaces
            .iter()
            .map(|w| w.workspace_id.as_str())
            .collect();
        assert_eq!(ws_ids, ["wrkspc_c1", "wrkspc_c2"]);
        let mut accts = vec![acct.id.clone(), sub.id.clone()];
        accts.sort();
        assert_eq!(plan.account_ids, accts);

        // The state afterwards: members, units, accounts of the prime.
        let members = env
            .client()
            .list_members(env.as_user(
                "user_o",
                ListMembersRequest {
                    organization_id: prime.clone(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .members;
        let now: HashMap<&str, i32> = members
            .iter()
            .map(|m| (m.user_id.as_str(), m.role))
            .collect();
        for m in &plan.members {
            assert_eq!(now[m.user_id.as_str()], m.resulting_role, "{}", m.user_id);
        }
        assert_eq!(now.len(), 5);
        let units = env
            .client()
            .list_units(env.as_user(
                "user_o",
                ListUnitsRequest {
                    organization_id: prime.clone(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .units;
        let unit_ids: Vec<(&str, i32)> = units.iter().map(|u| (u.id.as_str(), u.depth)).collect();
        assert_eq!(
            unit_ids,
            [(eng.id.as_str(), 1), (backend_unit.id.as_str(), 2)]
        );
        let listed = accounts(&env)
            .list_accounts(env.as_user(
                "user_o",
                ListAccountsRequest {
                    organization_id: prime.clone(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .accounts;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].id, acct.id);
        assert_eq!(listed[0].r#type(), AccountType::Managed);
        let moved_sub = accounts(&env)
            .get_account(env.as_user(
                "user_a",
                GetAccountRequest {
                    account_id: sub.id.clone(),
                    organization_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        assert_eq!(moved_sub.home_organization_id, prime);
        let grants = accounts(&env)
            .list_account_members(env.as_user(
                "user_o",
                ListAccountMembersRequest {
                    account_id: acct.id.clone(),
                    organization_id: prime.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .members;
        assert!(grants.iter().any(|g| g.user_id == "user_b"), "{grants:?}");

        // Invites: the pending one moved; the one the prime already had is withdrawn.
        let got = env
            .client()
            .get_invite(env.as_user(
                "user_o",
                GetInviteRequest {
                    invite_id: moving.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .invite
            .unwrap();
        assert_eq!(
            (got.organization_id.as_str(), got.state()),
            (prime.as_str(), InviteState::Pending)
        );
        expect_err(
            env.client()
                .get_invite(env.as_user(
                    "user_o",
                    GetInviteRequest {
                        invite_id: dropped.id.clone(),
                    },
                ))
                .await,
            Code::NotFound,
            "NOT_FOUND",
        );

        // Exactly one event, carrying the plan.
        let events = env.events_after(head, 0).await;
        assert_eq!(events.len(), 1, "{backend:?}: {events:?}");
        let Some(Payload::OrganizationsMerged(e)) = &events[0].payload else {
            panic!("{events:?}");
        };
        assert_eq!(events[0].revision, done.revision);
        assert_eq!(
            (
                e.prime_organization_id.as_str(),
                e.candidate_organization_id.as_str()
            ),
            (prime.as_str(), candidate.as_str())
        );
        assert_eq!(e.members, plan.members);
        assert_eq!(e.workspace_ids, ["wrkspc_c1", "wrkspc_c2"]);
        assert_eq!(e.account_ids, plan.account_ids);
        assert_eq!(e.candidate_owner_user_id, "user_o");

        // The audit log of both records it.
        for org in [&prime, &candidate] {
            let rows = audit_rows(&env, org, "organization.merge").await;
            assert_eq!(rows.len(), 1, "{backend:?} {org}: {rows:?}");
            assert_eq!(rows[0].resource_id, candidate);
            assert_eq!(rows[0].error_reason, "");
        }

        // The tombstone: its former OWNER reads it MERGED, naming the prime.
        let get = |user: &str| {
            let mut client = env.client();
            let request = env.as_user(
                user,
                GetOrganizationRequest {
                    organization_id: candidate.clone(),
                },
            );
            async move { client.get_organization(request).await }
        };
        let tomb = get("user_o")
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap();
        assert_eq!(tomb.state(), OrganizationState::Merged);
        assert_eq!(tomb.merged_into_organization_id, prime);
        // Everyone else, and every other RPC: NOT_FOUND.
        for user in ["user_a", "user_m", "user_x"] {
            expect_err(get(user).await, Code::NotFound, "NOT_FOUND");
        }
        for user in ["user_o", "user_a"] {
            let listed = env
                .client()
                .list_members(env.as_user(
                    user,
                    ListMembersRequest {
                        organization_id: candidate.clone(),
                        ..Default::default()
                    },
                ))
                .await;
            expect_err(listed, Code::NotFound, "NOT_FOUND");
        }
        let invite_again = env
            .client()
            .create_invite(env.as_user(
                "user_o",
                CreateInviteRequest {
                    organization_id: candidate.clone(),
                    invite: Some(Invite {
                        email: "late@acme.test".into(),
                        role: OrgRole::User as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await;
        expect_err(invite_again, Code::NotFound, "NOT_FOUND");
        let unit_again = env
            .client()
            .create_unit(env.as_user(
                "user_o",
                CreateUnitRequest {
                    organization_id: candidate.clone(),
                    unit: Some(Unit {
                        name: "Late".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await;
        expect_err(unit_again, Code::NotFound, "NOT_FOUND");
        let mine = env
            .client()
            .list_organizations(env.as_user(
                "user_o",
                ListOrganizationsRequest {
                    show_deleted: true,
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .organizations;
        assert!(mine.iter().all(|o| o.id != candidate), "{mine:?}");
        // Another merge of it: NOT_FOUND.
        expect_err(
            merge(&env, "user_o", merge_req(&prime, &candidate, false)).await,
            Code::NotFound,
            "NOT_FOUND",
        );

        // The role snapshot keeps the tombstone, without members, naming the prime.
        let snapshot = env
            .client()
            .list_role_assignments(env.as_service(ListRoleAssignmentsRequest {
                page_size: 1000,
                page_token: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        let entry = snapshot
            .organizations
            .iter()
            .find(|o| o.organization.as_ref().unwrap().id == candidate)
            .unwrap();
        let o = entry.organization.as_ref().unwrap();
        assert_eq!(o.state(), OrganizationState::Merged);
        assert_eq!(o.merged_into_organization_id, prime);
        assert!(entry.role_assignments.is_empty());

        // A retry with the request id answers the merge again, and publishes nothing more.
        let again = merge(&env, "user_o", req).await.unwrap();
        assert_eq!(again.plan, done.plan);
        assert_eq!((again.merged, again.revision), (true, done.revision));
        assert_eq!(env.events_after(head, 0).await.len(), 1);
    }
}

/// The plan is recomputed inside the merge: a member who joined the candidate after the preview
/// moves too.
#[tokio::test]
async fn org_15_a_member_who_joins_after_the_preview_moves_too() {
    for (backend, env) in each_env(|_| {}).await {
        let (prime, candidate) = ready_pair(&env).await;
        let preview = merge(&env, "user_o", merge_req(&prime, &candidate, true))
            .await
            .unwrap()
            .plan
            .unwrap();
        assert_eq!(preview.members.len(), 1);
        join(&env, &candidate, "user_o", "user_late", OrgRole::Developer).await;
        let plan = merge(&env, "user_o", merge_req(&prime, &candidate, false))
            .await
            .unwrap()
            .plan
            .unwrap();
        let late = plan
            .members
            .iter()
            .find(|m| m.user_id == "user_late")
            .unwrap();
        assert_eq!(late.resulting_role(), OrgRole::Developer, "{backend:?}");
        let member = env
            .client()
            .get_member(env.as_user(
                "user_late",
                GetMemberRequest {
                    organization_id: prime.clone(),
                    user_id: "me".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .member
            .unwrap();
        assert_eq!(member.role(), OrgRole::Developer);
    }
}
