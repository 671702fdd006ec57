//! The workspace service's events in this service: which unit each workspace belongs to
//! (`WorkspaceCreated`, `WorkspaceUpdated`; rule ORG-9: a unit with workspaces cannot be
//! deleted), re-synced from `ListWorkspaces` after a compaction of the workspace stream.

use std::collections::HashSet;

use orgplane_platform::ApiResult;
use orgplane_platform::clients::workspace::all_workspaces;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseTransaction, EntityTrait, QuerySelect, Set};

use crate::app::App;
use crate::store::{organization, unit_workspace};

impl App {
    /// Re-sync of the workspace service's stream after compaction: lists every workspace
    /// (archived ones too: they still hold their unit, ORG-9) with `ListWorkspaces`
    /// (`organization_id` `-`, this service's token) and rebuilds the unit placements from it.
    /// Returns the listing's revision (read by the workspace service before its rows).
    pub(crate) async fn resync_workspaces(&self, txn: &DatabaseTransaction) -> ApiResult<i64> {
        let (revision, workspaces) = all_workspaces(
            &self.runtime.endpoints.workspace,
            &self.runtime.service_tokens,
        )
        .await?;
        let mut placed: Vec<(String, String, String)> = workspaces
            .into_iter()
            .filter(|w| !w.unit_id.is_empty())
            .map(|w| (w.id, w.organization_id, w.unit_id))
            .collect();
        // Workspaces of an organization purged here (the workspace service applies the purge
        // later) hold no unit.
        let orgs: HashSet<String> = organization::Entity::find()
            .select_only()
            .column(organization::Column::Id)
            .into_tuple()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        placed.retain(|(_, org, _)| orgs.contains(org));
        unit_workspace::Entity::delete_many().exec(txn).await?;
        for chunk in placed.chunks(500) {
            unit_workspace::Entity::insert_many(chunk.iter().map(|(ws, org, unit)| {
                unit_workspace::ActiveModel {
                    workspace_id: Set(ws.clone()),
                    organization_id: Set(org.clone()),
                    unit_id: Set(unit.clone()),
                }
            }))
            .exec_without_returning(txn)
            .await?;
        }
        tracing::info!(
            revision,
            placed = placed.len(),
            "re-synced the workspaces' units after compaction"
        );
        Ok(revision)
    }

    pub(crate) async fn place_workspace(
        &self,
        txn: &DatabaseTransaction,
        organization_id: &str,
        workspace_id: &str,
        unit_id: &str,
    ) -> ApiResult<()> {
        if unit_id.is_empty() {
            unit_workspace::Entity::delete_by_id(workspace_id.to_owned())
                .exec(txn)
                .await?;
            return Ok(());
        }
        unit_workspace::Entity::insert(unit_workspace::ActiveModel {
            workspace_id: Set(workspace_id.to_owned()),
            organization_id: Set(organization_id.to_owned()),
            unit_id: Set(unit_id.to_owned()),
        })
        .on_conflict(
            OnConflict::column(unit_workspace::Column::WorkspaceId)
                .update_column(unit_workspace::Column::UnitId)
                .to_owned(),
        )
        .exec(txn)
        .await?;
        Ok(())
    }
}
