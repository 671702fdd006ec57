//! Tenants cannot reach into each other through ids they learn (rule ORG-9): the real `orgplane`
//! binary as four processes on SQLite, so the workspace service's unit check crosses the network
//! to the organization service.
//!
//! Alma owns Tenant A with an empty unit; Boris owns Tenant B. Boris names A's unit when he
//! creates a workspace and when he moves one: NOT_FOUND both times, and nothing of B's lands in
//! A's unit, so Alma deletes it. The same calls with B's own unit succeed: the check tells the
//! two apart. (That another organization's workspace never blocks a unit's deletion, whatever
//! reaches the organization service, is `org_9_another_organizations_workspace_…` there.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use orgplane_platform::testkit::bearer;
use orgplane_proto::organization::v1 as org;
use orgplane_proto::workspace::v1 as ws;
use support::cluster::{Cluster, Layout};
use support::people;
use tonic::Code;

use org::organization_service_client::OrganizationServiceClient;
use ws::workspace_service_client::WorkspaceServiceClient;

const PASSWORD: &str = "correct horse battery staple";

async fn unit(cluster: &Cluster, token: &str, organization_id: &str, name: &str) -> org::Unit {
    OrganizationServiceClient::new(cluster.channel("organization"))
        .create_unit(bearer(
            org::CreateUnitRequest {
                organization_id: organization_id.into(),
                unit: Some(org::Unit {
                    name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap()
}

async fn create_workspace(
    cluster: &Cluster,
    token: &str,
    organization_id: &str,
    name: &str,
    unit_id: &str,
) -> Result<ws::Workspace, tonic::Status> {
    WorkspaceServiceClient::new(cluster.channel("workspace"))
        .create_workspace(bearer(
            ws::CreateWorkspaceRequest {
                organization_id: organization_id.into(),
                workspace: Some(ws::Workspace {
                    name: name.into(),
                    unit_id: unit_id.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().workspace.unwrap())
}

async fn move_workspace(
    cluster: &Cluster,
    token: &str,
    workspace_id: &str,
    unit_id: &str,
) -> Result<ws::Workspace, tonic::Status> {
    WorkspaceServiceClient::new(cluster.channel("workspace"))
        .update_workspace(bearer(
            ws::UpdateWorkspaceRequest {
                workspace: Some(ws::Workspace {
                    id: workspace_id.into(),
                    unit_id: unit_id.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["unit_id".into()],
                }),
                etag: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().workspace.unwrap())
}

async fn delete_unit(cluster: &Cluster, token: &str, u: &org::Unit) -> Result<(), tonic::Status> {
    OrganizationServiceClient::new(cluster.channel("organization"))
        .delete_unit(bearer(
            org::DeleteUnitRequest {
                unit_id: u.id.clone(),
                etag: u.etag.clone(),
            },
            token,
        ))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn org_9_a_workspace_is_placed_only_in_a_unit_of_its_own_organization() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(Layout::FourProcesses, dir.path(), None, Vec::new()).await;
    let (alma, _) = people::signed_up_user(&cluster, "alma@tenant-a.example", PASSWORD).await;
    let (boris, _) = people::signed_up_user(&cluster, "boris@tenant-b.example", PASSWORD).await;
    let a = people::create_organization(&cluster, &alma, "Tenant A").await;
    let b = people::create_organization(&cluster, &boris, "Tenant B").await;
    let a_unit = unit(&cluster, &alma, &a, "Research").await;
    let b_unit = unit(&cluster, &boris, &b, "Sales").await;

    let refused = create_workspace(&cluster, &boris, &b, "Squatter", &a_unit.id)
        .await
        .expect_err("another organization's unit must not be accepted");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let placed = create_workspace(&cluster, &boris, &b, "Field", &b_unit.id)
        .await
        .expect("B's own unit is accepted");
    assert_eq!(placed.unit_id, b_unit.id);
    let moved = move_workspace(&cluster, &boris, &placed.id, &a_unit.id)
        .await
        .expect_err("moving into another organization's unit must be refused");
    assert_eq!(moved.code(), Code::NotFound, "{moved:?}");
    let unknown = create_workspace(&cluster, &boris, &b, "Ghost", "unit_doesnotexist")
        .await
        .expect_err("a unit that does not exist is not found");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // Nothing of B's sits in A's unit: Alma deletes it.
    delete_unit(&cluster, &alma, &a_unit)
        .await
        .expect("A's empty unit is deleted");
    cluster.stop().await;
}
