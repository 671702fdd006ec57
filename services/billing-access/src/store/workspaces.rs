//! Workspaces as known here (names and archival, from the workspace service's events) and the
//! ids of purged organizations.

use std::collections::{HashMap, HashSet};

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, QuerySelect, Set};

use crate::domain::Result;
use crate::store::entity::{purged, workspace};

/// Whether `organization_id` was purged.
pub async fn is_purged<C: ConnectionTrait>(db: &C, organization_id: &str) -> Result<bool> {
    Ok(purged::Entity::find_by_id(organization_id.to_owned())
        .one(db)
        .await?
        .is_some())
}

/// The purged organizations among `ids` (all of them with `None`).
pub async fn purged_among<'a, C: ConnectionTrait>(
    db: &C,
    ids: Option<impl Iterator<Item = &'a str>>,
) -> Result<HashSet<String>> {
    let mut query = purged::Entity::find()
        .select_only()
        .column(purged::Column::OrganizationId);
    if let Some(ids) = ids {
        query = query.filter(purged::Column::OrganizationId.is_in(ids));
    }
    Ok(query.into_tuple().all(db).await?.into_iter().collect())
}

/// The workspaces known here among `ids`, by id.
pub async fn known<C: ConnectionTrait>(
    db: &C,
    ids: &HashSet<&str>,
) -> Result<HashMap<String, workspace::Model>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(workspace::Entity::find()
        .filter(workspace::Column::WorkspaceId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|w| (w.workspace_id.clone(), w))
        .collect())
}

/// Inserts or renames a workspace; sets its archival time when `archive_time_ms` is given.
pub async fn upsert<C: ConnectionTrait>(db: &C, row: workspace::Model) -> Result<()> {
    let mut update = vec![workspace::Column::OrganizationId, workspace::Column::Name];
    if row.archive_time_ms.is_some() {
        update.push(workspace::Column::ArchiveTimeMs);
    }
    workspace::Entity::insert(workspace::ActiveModel {
        workspace_id: Set(row.workspace_id),
        organization_id: Set(row.organization_id),
        name: Set(row.name),
        archive_time_ms: Set(row.archive_time_ms),
    })
    .on_conflict(
        OnConflict::column(workspace::Column::WorkspaceId)
            .update_columns(update)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
