//! The handler of MergeOrganizations (rule ORG-15).

use orgplane_platform::Call;
use orgplane_proto::organization::v1::*;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, PreconditionViolation, StatusExt};

use super::convert::organization;
use super::{Reply, wire};
use crate::app::merge::MergeOrganizations;
use crate::app::{App, Attempt, Scope};
use crate::domain::Error;
use crate::domain::error::{MergeRefusal, conflict_subject, conflict_type};

pub(super) async fn merge(
    app: &App,
    request: Request<MergeOrganizationsRequest>,
) -> Reply<MergeOrganizationsResponse> {
    let call = Call::of(&request)?;
    let req = request.into_inner();
    // A refusal is recorded in both organizations' logs (each where it exists here).
    let attempt = |id: &str| {
        Attempt::new(
            Scope::Organization(id.to_owned()),
            "organization.merge",
            "organization",
            &req.candidate_organization_id,
        )
    };
    let (prime_attempt, candidate_attempt) = (
        attempt(&req.prime_organization_id),
        attempt(&req.candidate_organization_id),
    );
    let cmd = MergeOrganizations {
        prime_organization_id: req.prime_organization_id,
        candidate_organization_id: req.candidate_organization_id,
        validate_only: req.validate_only,
        request_id: req.request_id,
    };
    let preview = cmd.validate_only;
    let result = app.merge_organizations(&call, cmd).await;
    let conflicts = match &result {
        Err(Error::Merge(MergeRefusal::Conflicts { conflicts })) => conflicts.clone(),
        _ => Vec::new(),
    };
    let mut result = wire(result);
    // A preview changes nothing: its refusals are answered, not audited.
    if !preview {
        result = app.audited(&call, prime_attempt, result).await;
        result = app.audited(&call, candidate_attempt, result).await;
    }
    let done = result.map_err(|e| listing_conflicts(e.into(), &conflicts))?;
    Ok(Response::new(MergeOrganizationsResponse {
        plan: Some(done.plan),
        merged: done.merged,
        prime: Some(organization(&done.prime)),
        revision: done.revision,
    }))
}

/// `status` with its PreconditionFailure listing every one of `conflicts` (type: the conflict
/// kind, subject: the resource, description: what to do), when there are any.
fn listing_conflicts(status: Status, conflicts: &[MergeConflict]) -> Status {
    if conflicts.is_empty() {
        return status;
    }
    let mut details: ErrorDetails = status.get_error_details();
    details.set_precondition_failure(
        conflicts
            .iter()
            .map(|c| {
                PreconditionViolation::new(
                    conflict_type(c),
                    conflict_subject(c),
                    c.description.clone(),
                )
            })
            .collect::<Vec<_>>(),
    );
    Status::with_error_details(status.code(), status.message(), details)
}
