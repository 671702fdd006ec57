//! MergeOrganizations in the audit suite ([`crate::audit`]). One user owns two fresh
//! organizations (a token with a fresh sign-in, as DeleteOrganization needs): the prime holds
//! `chaos.test` VERIFIED (the owner's email domain; registered through the API and marked
//! VERIFIED in the database, the harness has no DNS), the candidate holds no VERIFIED domain, a
//! DEVELOPER and a unit. Refused merges are recorded as the organization service documents them
//! (ORG-10): a refusal by a rule (PERMISSION_DENIED: an ADMIN of both; FAILED_PRECONDITION: a
//! prime without a VERIFIED domain) as one OUTCOME_FAILURE `organization.merge` record in each
//! organization's log with its code and reason; a NOT_FOUND (a member of neither) in neither.
//! Then the OWNER previews the merge (its plan must equal what the merge does) and merges with
//! its own `x-request-id`: the suite counts one `organization.merge` record in the prime's log
//! and one in the candidate's ([`crate::audit::SEVERAL_RECORDS`]) and lists the prime's. The
//! candidate is then the tombstone the RPC documents.

use orgplane_proto::audit::v1::Outcome;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::organization::v1::OrgRole;
use tonic::{Code, Response, Status};

use super::{ACTION, audit_rows, check, create_org, join, role_in, seed_user, verified_domain};
use crate::Figures;
use crate::harness::{Harness, bearer, bearer_with_id};

/// One call: (method, request id, outcome).
pub type Done = (&'static str, String, Result<Response<()>, Status>);

/// The owner of both organizations.
pub const OWNER: &str = "user_audit_merger";

/// What the merge left for the suite: its calls, and where its record is listed.
pub struct Merged {
    /// The successful merge.
    pub done: Vec<Done>,
    /// The prime, whose ListAuditEvents (read by [`OWNER`]) lists the merge's record.
    pub prime: String,
    /// A summary for the figures' notes.
    pub notes: String,
}

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn merge(
    h: &Harness,
    token: &str,
    (prime, candidate): (&str, &str),
    validate_only: bool,
    request_id: &str,
) -> Result<Response<org_api::MergeOrganizationsResponse>, Status> {
    h.orgs()
        .merge_organizations(bearer_with_id(
            org_api::MergeOrganizationsRequest {
                prime_organization_id: prime.into(),
                candidate_organization_id: candidate.into(),
                validate_only,
                request_id: String::new(),
            },
            token,
            request_id,
        ))
        .await
}

/// Checks the records written under `request_id`: one OUTCOME_FAILURE `organization.merge`
/// with `code` and `reason` in each of `orgs`' logs, or none at all when `orgs` is empty.
async fn refusal_recorded(
    h: &Harness,
    f: &mut Figures,
    what: &str,
    request_id: &str,
    orgs: &[&str],
    (code, reason): (&str, &str),
) -> anyhow::Result<()> {
    let mut records = Vec::new();
    for org in orgs {
        records.extend(
            audit_rows(h, org)
                .await?
                .into_iter()
                .filter(|x| x.request_id == request_id),
        );
    }
    f.operations += 1;
    let faithful = records.iter().all(|x| {
        x.action == ACTION
            && x.outcome == Outcome::Failure as i32
            && x.status_code == code
            && x.error_reason == reason
    });
    let per_org = orgs
        .iter()
        .all(|o| records.iter().filter(|x| x.organization_id == *o).count() == 1);
    check(
        f,
        faithful && per_org && records.len() == orgs.len(),
        || {
            let got: Vec<String> = records
                .iter()
                .map(|x| {
                    format!(
                        "{} in {} ({}, {} {})",
                        x.action, x.organization_id, x.outcome, x.status_code, x.error_reason
                    )
                })
                .collect();
            format!(
                "{what}: audit records {got:?}, expected one OUTCOME_FAILURE {ACTION} ({code} \
                 {reason}) in each of {orgs:?}"
            )
        },
    );
    Ok(())
}

/// Records one refused merge: its code must be `want`.
fn refused<T>(f: &mut Figures, what: &str, r: &Result<T, Status>, want: Code) {
    f.operations += 1;
    let code = r.as_ref().map_or_else(Status::code, |_| Code::Ok);
    check(f, code == want, || {
        let msg = r.as_ref().err().map(Status::message).unwrap_or_default();
        format!("{what}: {code:?} {msg} (expected {want:?})")
    });
}

/// Runs the refusals and the merge (module comment), checking the refusals' records here.
pub async fn run(h: &Harness, f: &mut Figures) -> anyhow::Result<Merged> {
    let admin = "user_audit_merge_admin";
    let dev = "user_audit_merge_dev";
    let outsider = "user_audit_merge_outsider";
    for u in [OWNER, admin, dev, outsider] {
        seed_user(h, u).await?;
    }
    let token = h.user_token(OWNER)?;
    let (prime, _) = create_org(h, &token, "Audit merge prime").await?;
    let (candidate, _) = create_org(h, &token, "Audit merge candidate").await?;
    verified_domain(h, &prime, &token, "chaos.test").await?;
    join(h, &token, &prime, admin, OrgRole::Admin).await?;
    join(h, &token, &candidate, admin, OrgRole::Admin).await?;
    join(h, &token, &candidate, dev, OrgRole::Developer).await?;
    h.orgs()
        .create_unit(bearer(
            org_api::CreateUnitRequest {
                organization_id: candidate.clone(),
                unit: Some(org_api::Unit {
                    name: "Audit merge unit".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await?;
    let pair = (prime.as_str(), candidate.as_str());
    let both = [prime.as_str(), candidate.as_str()];

    // Refused by role: an ADMIN of both.
    let id = rid();
    let r = merge(h, &h.user_token(admin)?, pair, false, &id).await;
    refused(
        f,
        "MergeOrganizations by an ADMIN of both",
        &r,
        Code::PermissionDenied,
    );
    let got = r
        .as_ref()
        .err()
        .and_then(orgplane_platform::error::reason_of);
    check(f, got.as_deref() == Some("INSUFFICIENT_ROLE"), || {
        format!("MergeOrganizations by an ADMIN of both: reason {got:?} (INSUFFICIENT_ROLE)")
    });
    let denied = ("PERMISSION_DENIED", "INSUFFICIENT_ROLE");
    refusal_recorded(
        h,
        f,
        "MergeOrganizations by an ADMIN of both",
        &id,
        &both,
        denied,
    )
    .await?;
    // Refused by a precondition: the prime (the candidate here) holds no VERIFIED domain.
    let id = rid();
    let r = merge(h, &token, (&candidate, &prime), false, &id).await;
    refused(
        f,
        "MergeOrganizations into a prime without a domain",
        &r,
        Code::FailedPrecondition,
    );
    refusal_recorded(
        h,
        f,
        "MergeOrganizations into a prime without a domain",
        &id,
        &both,
        ("FAILED_PRECONDITION", "MERGE_PRIME_DOMAIN_NOT_VERIFIED"),
    )
    .await?;
    // NOT_FOUND: a member of neither writes into neither log.
    let id = rid();
    let r = merge(h, &h.user_token(outsider)?, pair, false, &id).await;
    refused(
        f,
        "MergeOrganizations by a member of neither",
        &r,
        Code::NotFound,
    );
    refusal_recorded(
        h,
        f,
        "MergeOrganizations by a member of neither",
        &id,
        &[],
        ("", ""),
    )
    .await?;
    // A refused preview (for the notes: a preview changes nothing).
    let id = rid();
    let r = merge(h, &h.user_token(admin)?, pair, true, &id).await;
    refused(
        f,
        "MergeOrganizations preview by an ADMIN of both",
        &r,
        Code::PermissionDenied,
    );
    let mut preview_records = 0;
    for org in both {
        preview_records += audit_rows(h, org)
            .await?
            .iter()
            .filter(|x| x.request_id == id)
            .count();
    }

    // The preview, then the merge.
    let preview = merge(h, &token, pair, true, &rid()).await;
    f.operations += 1;
    let planned = match preview {
        Ok(p) if !p.get_ref().merged && p.get_ref().revision == 0 => p.into_inner().plan,
        other => {
            check(f, false, || {
                format!("MergeOrganizations preview by the OWNER: {other:?}")
            });
            None
        }
    };
    let id = rid();
    let r = merge(h, &token, pair, false, &id).await;
    if let Ok(m) = &r {
        let m = m.get_ref();
        check(f, m.merged && m.revision > 0 && m.plan == planned, || {
            format!(
                "MergeOrganizations: merged {} revision {}, plan {:?} (the preview planned {:?})",
                m.merged, m.revision, m.plan, planned
            )
        });
    }
    let done = vec![("MergeOrganizations", id, r.map(|x| x.map(|_| ())))];
    tombstone(h, f, pair, dev).await?;
    Ok(Merged {
        done,
        prime,
        notes: format!(
            "a refused MergeOrganizations preview left {preview_records} audit record(s)"
        ),
    })
}

/// After the merge: the former OWNER reads the candidate as MERGED into the prime, a moved
/// member gets NOT_FOUND for it and holds their role in the prime, and the OWNER still owns the
/// prime.
async fn tombstone(
    h: &Harness,
    f: &mut Figures,
    (prime, candidate): (&str, &str),
    dev: &str,
) -> anyhow::Result<()> {
    let token = h.user_token(OWNER)?;
    let get = |t: String| {
        let mut c = h.orgs();
        let req = bearer(
            org_api::GetOrganizationRequest {
                organization_id: candidate.into(),
            },
            &t,
        );
        async move { c.get_organization(req).await }
    };
    let own = get(token.clone()).await;
    f.operations += 3;
    let o = own
        .as_ref()
        .ok()
        .and_then(|x| x.get_ref().organization.clone())
        .unwrap_or_default();
    check(
        f,
        o.state == org_api::OrganizationState::Merged as i32
            && o.merged_into_organization_id == prime,
        || format!("the merged candidate as its former OWNER reads it: {own:?}"),
    );
    let member = get(h.user_token(dev)?).await;
    check(
        f,
        member.as_ref().is_err_and(|s| s.code() == Code::NotFound),
        || format!("the merged candidate as a moved member reads it: {member:?}"),
    );
    let roles = (
        role_in(h, prime, dev, &token).await?,
        role_in(h, prime, OWNER, &token).await?,
    );
    check(
        f,
        roles == (OrgRole::Developer as i32, OrgRole::Owner as i32),
        || format!("roles in the prime after the merge (DEVELOPER, OWNER): {roles:?}"),
    );
    Ok(())
}
