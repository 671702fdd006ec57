//! ORG-9 across tenants: only the unit's own organization's workspaces keep it from deletion.

use orgplane_organization::store::unit_workspace;
use orgplane_proto::events::v1::WorkspaceCreated;
use orgplane_proto::events::v1::event::Payload;
use sea_orm::EntityTrait;

use super::*;

async fn unit_of(rig: &Rig, owner: &str, org: &str, name: &str) -> Unit {
    rig.client()
        .create_unit(rig.as_user(
            owner,
            CreateUnitRequest {
                organization_id: org.into(),
                unit: Some(Unit {
                    name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap()
}

/// Publishes a WorkspaceCreated of `org` placed in `unit_id` and waits until it is applied.
async fn place_workspace(rig: &Rig, org: &str, workspace_id: &str, unit_id: &str) {
    rig.publish_workspace(Payload::WorkspaceCreated(WorkspaceCreated {
        organization_id: org.into(),
        workspace_id: workspace_id.into(),
        name: "WS".into(),
        unit_id: unit_id.into(),
    }))
    .await;
    for _ in 0..200 {
        if unit_workspace::Entity::find_by_id(workspace_id.to_owned())
            .one(rig.org.db())
            .await
            .unwrap()
            .is_some()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{workspace_id} was not applied");
}

async fn delete(
    rig: &Rig,
    owner: &str,
    unit: &Unit,
) -> Result<tonic::Response<DeleteUnitResponse>, tonic::Status> {
    rig.client()
        .delete_unit(rig.as_user(
            owner,
            DeleteUnitRequest {
                unit_id: unit.id.clone(),
                etag: unit.etag.clone(),
            },
        ))
        .await
}

#[tokio::test]
async fn org_9_another_organizations_workspace_naming_a_unit_does_not_block_its_deletion() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    let a = create_org(&rig, "user_a", "Tenant A").await;
    let b = create_org(&rig, "user_b", "Tenant B").await;
    let target = unit_of(&rig, "user_a", &a.id, "Empty").await;
    // Tenant B's workspace names A's unit (what a workspace service without the ORG-9 check
    // would have let through): it must not count for A.
    place_workspace(&rig, &b.id, "wrkspc_b", &target.id).await;
    delete(&rig, "user_a", &target)
        .await
        .expect("A's empty unit is deleted whatever B's workspaces name");

    // Control: A's own workspace in its unit still blocks the deletion.
    let kept = unit_of(&rig, "user_a", &a.id, "Busy").await;
    place_workspace(&rig, &a.id, "wrkspc_a", &kept.id).await;
    expect_err(
        delete(&rig, "user_a", &kept).await,
        Code::FailedPrecondition,
        Some("UNIT_HAS_WORKSPACES"),
    );
}
