//! The client of the workspace service's `ListWorkspaces`, for the re-sync of the unit
//! placements after a compaction of the workspace stream (rule ORG-9).

use orgplane_platform::ApiResult;
use orgplane_platform::clients::workspace::all_workspaces;
use orgplane_platform::runtime::Runtime;

/// A workspace placed in a unit: `(workspace id, organization id, unit id)`.
pub type Placement = (String, String, String);

/// Every workspace (archived ones too: they still hold their unit) that belongs to a unit, with
/// the revision of the listing (read by the workspace service before its rows), page by page
/// with this service's token.
pub async fn list_placements(runtime: &Runtime) -> ApiResult<(i64, Vec<Placement>)> {
    let (revision, workspaces) =
        all_workspaces(&runtime.endpoints.workspace, &runtime.service_tokens).await?;
    let placed = workspaces
        .into_iter()
        .filter(|w| !w.unit_id.is_empty())
        .map(|w| (w.id, w.organization_id, w.unit_id))
        .collect();
    Ok((revision, placed))
}
