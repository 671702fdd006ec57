//! The two organizations' workspaces, from the workspace service, which owns them (rule WS-1).
//!
//! This service's account may list every organization's workspaces (`ListWorkspaces` with
//! organization `-`, the listing its consumer re-syncs from) but not one organization's
//! (`read-workspaces` is not among its capabilities), so the merge reads the full listing and
//! keeps the two organizations' workspaces. Merges are rare; a per-organization listing would
//! need that capability.

use orgplane_platform::clients::workspace::all_workspaces;
use orgplane_proto::workspace::v1::WorkspaceState;

use crate::app::App;
use crate::domain::Result;
use crate::domain::error::MergeRefusal;
use crate::domain::merge::WorkspaceFacts;

/// The workspaces of a prime and a candidate, archived ones included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workspaces {
    /// The prime's.
    pub prime: Vec<WorkspaceFacts>,
    /// The candidate's.
    pub candidate: Vec<WorkspaceFacts>,
}

impl App {
    /// The workspaces of `prime` and `candidate`; UNAVAILABLE `WORKSPACE_SERVICE_UNAVAILABLE`
    /// when the workspace service does not answer.
    pub(crate) async fn merge_workspaces(
        &self,
        prime: &str,
        candidate: &str,
    ) -> Result<Workspaces> {
        let (_, all) = all_workspaces(
            &self.runtime.endpoints.workspace,
            &self.runtime.service_tokens,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "the workspace service did not list the workspaces of a merge");
            MergeRefusal::WorkspaceServiceUnavailable
        })?;
        let mut out = Workspaces::default();
        for w in all {
            let facts = WorkspaceFacts {
                archived: w.state == WorkspaceState::Archived as i32,
                id: w.id,
                name: w.name,
            };
            if w.organization_id == prime {
                out.prime.push(facts);
            } else if w.organization_id == candidate {
                out.candidate.push(facts);
            }
        }
        Ok(out)
    }
}
