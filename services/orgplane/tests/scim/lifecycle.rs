//! Provision, deprovision and reactivate one person, and the bookkeeping around it.

use std::time::{Duration, Instant};

use orgplane_platform::testkit::bearer;
use orgplane_proto::billing::v1 as billing;
use orgplane_proto::billing::v1::billing_access_service_client::BillingAccessServiceClient;
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::workspace::v1 as ws;
use orgplane_proto::workspace::v1::workspace_service_client::WorkspaceServiceClient;
use serde_json::json;
use tonic::Code;

use crate::rig::{Rig, Tenant};

/// Which services refuse `token` itself now (UNAUTHENTICATED: identity, organization,
/// workspace, billing); a role that may not see billing is an answer, not a refusal.
async fn refusals(rig: &Rig, org_id: &str, token: &str) -> [bool; 4] {
    let id = rig
        .identity()
        .get_user(bearer(
            identity::GetUserRequest {
                user_id: "me".into(),
            },
            token,
        ))
        .await;
    let o = rig
        .orgs()
        .get_organization(bearer(
            org::GetOrganizationRequest {
                organization_id: org_id.into(),
            },
            token,
        ))
        .await;
    let w = WorkspaceServiceClient::new(rig.channel.clone())
        .list_workspaces(bearer(
            ws::ListWorkspacesRequest {
                organization_id: org_id.into(),
                ..Default::default()
            },
            token,
        ))
        .await;
    let b = BillingAccessServiceClient::new(rig.channel.clone())
        .get_billing_account(bearer(
            billing::GetBillingAccountRequest {
                organization_id: org_id.into(),
            },
            token,
        ))
        .await;
    [
        id.is_err_and(|s| s.code() == Code::Unauthenticated),
        o.is_err_and(|s| s.code() == Code::Unauthenticated),
        w.is_err_and(|s| s.code() == Code::Unauthenticated),
        b.is_err_and(|s| s.code() == Code::Unauthenticated),
    ]
}

async fn member_role(rig: &Rig, t: &Tenant, user_id: &str) -> Result<i32, Code> {
    rig.orgs()
        .get_member(bearer(
            org::GetMemberRequest {
                organization_id: t.org_id.clone(),
                user_id: user_id.into(),
            },
            &t.owner_token,
        ))
        .await
        .map(|r| r.into_inner().member.unwrap().role)
        .map_err(|s| s.code())
}

async fn lifecycle(postgres: bool) {
    let Some(rig) = Rig::start(postgres).await else {
        return;
    };
    let acme = rig.tenant("Acme", "acme.test").await;
    // Eve has an account already (a verified address of the verified domain): SCIM links it.
    let (_, _, eve_id) = rig.person("eve@acme.test").await;
    let created = rig
        .scim(
            Some(&acme.token),
            "POST",
            "/Users",
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "Eve@acme.test",
                "name": {"givenName": "Eve", "familyName": "Example"},
                "emails": [{"value": "eve@acme.test", "type": "work", "primary": true}],
                "password": "never-stored-1234",
                "active": true
            })),
            &[],
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(created.headers.get("location").is_some());
    assert!(created.headers.get("etag").is_some());
    assert!(created.body.get("password").is_none());
    let scim_id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        member_role(&rig, &acme, &eve_id).await,
        Ok(org::OrgRole::User as i32)
    );

    // She signs in and works in every service.
    let (access, refresh, _) = rig.login("eve@acme.test").await.unwrap();
    // Every service learns of the membership from the organization's events: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut working = refusals(&rig, &acme.org_id, &access).await;
    while working != [false; 4] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        working = refusals(&rig, &acme.org_id, &access).await;
    }
    assert_eq!(working, [false; 4]);

    // Okta deactivates her.
    let deactivated = rig
        .scim(
            Some(&acme.token),
            "PATCH",
            &format!("/Users/{scim_id}"),
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]
            })),
            &[],
        )
        .await;
    let answered = Instant::now();
    assert_eq!(deactivated.status, 200, "{:?}", deactivated.body);
    assert_eq!(deactivated.body["active"], json!(false));
    let mut refused = [false; 4];
    while answered.elapsed() < Duration::from_secs(2) {
        refused = refusals(&rig, &acme.org_id, &access).await;
        if refused == [true; 4] {
            break;
        }
    }
    let took = answered.elapsed();
    assert_eq!(
        refused, [true; 4],
        "identity, organization, workspace, billing"
    );
    eprintln!(
        "deprovisioned: every service refused the access token {took:?} after the SCIM answer"
    );
    assert!(took < Duration::from_millis(100), "refused after {took:?}");
    let refreshed = rig
        .identity()
        .refresh(identity::RefreshRequest {
            refresh_token: refresh,
        })
        .await;
    assert!(refreshed.is_err());
    assert_eq!(member_role(&rig, &acme, &eve_id).await, Err(Code::NotFound));

    // Entra reactivates her (the string "True"): the membership is back, a new sign-in works.
    let reactivated = rig
        .scim(
            Some(&acme.token),
            "PATCH",
            &format!("/Users/{scim_id}"),
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "Replace", "path": "active", "value": "True"}]
            })),
            &[],
        )
        .await;
    assert_eq!(reactivated.status, 200, "{:?}", reactivated.body);
    assert_eq!(
        member_role(&rig, &acme, &eve_id).await,
        Ok(org::OrgRole::User as i32)
    );
    let (again, _, _) = rig.login("eve@acme.test").await.unwrap();
    let mut ok = [true; 4];
    for _ in 0..100 {
        ok = refusals(&rig, &acme.org_id, &again).await;
        if ok == [false; 4] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ok, [false; 4]);

    // DELETE ends the membership; the account stays.
    let deleted = rig
        .scim(
            Some(&acme.token),
            "DELETE",
            &format!("/Users/{scim_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(member_role(&rig, &acme, &eve_id).await, Err(Code::NotFound));
    let gone = rig
        .scim(
            Some(&acme.token),
            "GET",
            &format!("/Users/{scim_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(gone.status, 404);
    rig.login("eve@acme.test").await.unwrap();

    // The secret is in no audit record of identity or organization.
    let id_audit = rig
        .identity()
        .list_audit_events(bearer(
            identity::ListAuditEventsRequest {
                organization_id: acme.org_id.clone(),
                page_size: 500,
                ..Default::default()
            },
            &acme.owner_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let text = format!("{id_audit:?}");
    assert!(
        text.contains("scim.user.created"),
        "SCIM writes are audited"
    );
    assert!(text.contains(&acme.token_id));
    assert!(
        !text.contains(&acme.token),
        "the secret is not in identity's audit"
    );
    assert!(!text.contains("never-stored-1234"));
    let org_audit = rig
        .orgs()
        .list_audit_events(bearer(
            org::ListAuditEventsRequest {
                organization_id: acme.org_id.clone(),
                page_size: 500,
                ..Default::default()
            },
            &acme.owner_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{org_audit:?}").contains(&acme.token));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_deprovision_ends_access_everywhere_within_100ms_and_reactivation_restores_it_sqlite()
{
    lifecycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_deprovision_ends_access_everywhere_within_100ms_and_reactivation_restores_it_postgres()
 {
    lifecycle(true).await;
}
