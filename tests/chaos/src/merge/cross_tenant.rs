//! MergeOrganizations across tenants. The generated matrix ([`crate::security`]) names A's
//! organization as the prime (beside an unknown candidate); here every caller of tenant B (each
//! role and B's admin and workspace API keys) names A's organization as the candidate with B's
//! as the prime, and as the prime with B's as the candidate, each as a preview
//! (`validate_only`) and as a merge. A holds a VERIFIED domain and B meets every precondition of
//! a prime (its OWNER's email is in B's VERIFIED `chaos.test`, and the same OWNER's preview of a
//! second organization into B answers a plan), so an answer about A's preconditions (its
//! domains, its conflicts) would show that the tenant check did not come first. Each attempt
//! must be refused as for a non-member (NOT_FOUND or PERMISSION_DENIED), exactly as the same
//! request naming an unknown organization id of the same shape is (code, message, details),
//! and may not name anything of A or C beyond the id it sent. A's organization, members, units,
//! invites and domains are unchanged, and no attempt is recorded in A's audit log (ORG-10),
//! except B's workspace key's, which the whole service records there (counted in the notes).

use orgplane_proto::organization::v1 as org_api;
use prost::Message;
use tonic::{Code, Status};

use super::{body, check, create_org, holds_verified, snapshot, target, unknown_like};
use crate::Figures;
use crate::accounts::cross_tenant::disguised;
use crate::harness::{Harness, bearer};
use crate::security::{Cred, Tenant, call, contains_any};

/// A's VERIFIED domain, which a precondition answer about A as a candidate would name.
const A_DOMAIN: &str = "tenant-a-merge.chaos.test";

/// The domain B holds VERIFIED (every harness user is `<id>@chaos.test`).
const B_DOMAIN: &str = "chaos.test";

/// `s` with `id` replaced by [`unknown_like`] in its message and details, to compare it with
/// the answer naming the unknown id.
fn as_unknown(s: &Status, id: &str) -> (Code, String, Vec<u8>) {
    (
        s.code(),
        s.message().replace(id, &unknown_like(id)),
        disguised(s.details(), &[id]),
    )
}

/// The attacks (module comment); answers a summary for the figures' notes.
pub(crate) async fn cross_tenant(
    h: &Harness,
    f: &mut Figures,
    (a, b, c): (&Tenant, &Tenant, &Tenant),
    attackers: &[(String, Cred)],
) -> anyhow::Result<String> {
    let a_owner = h.user_token(&a.owner)?;
    let b_owner = h.user_token(&b.owner)?;
    super::verified_domain(h, &a.org, &a_owner, A_DOMAIN).await?;
    if !holds_verified(h, &b.org, &b_owner, B_DOMAIN).await? {
        super::verified_domain(h, &b.org, &b_owner, B_DOMAIN).await?;
    }
    // Baseline: B's OWNER previews merging a second organization of theirs into B; B passes
    // every precondition, so what answers about A below is the tenant check.
    let (b2, _) = create_org(h, &b_owner, "Org B merge baseline").await?;
    let r = h
        .orgs()
        .merge_organizations(bearer(
            org_api::MergeOrganizationsRequest {
                prime_organization_id: b.org.clone(),
                candidate_organization_id: b2.clone(),
                validate_only: true,
                request_id: String::new(),
            },
            &b_owner,
        ))
        .await;
    f.operations += 1;
    check(f, r.as_ref().is_ok_and(|x| !x.get_ref().merged), || {
        format!("MergeOrganizations baseline: B's OWNER previews B2 into B → {r:?}")
    });
    let before = snapshot(h, &a.org, &a_owner).await?;
    let before_rows: std::collections::HashSet<String> = super::audit_rows(h, &a.org)
        .await?
        .into_iter()
        .map(|x| x.id)
        .collect();
    // What no answer may name: everything of A but its organization id (which the request
    // sent), A's VERIFIED domain, and all of C.
    let hidden: Vec<&str> = a
        .secrets()
        .into_iter()
        .filter(|s| *s != a.org)
        .chain([A_DOMAIN])
        .chain(c.secrets())
        .collect();
    let mut codes: std::collections::BTreeMap<String, usize> = Default::default();
    let mut sent = 0;
    for (role, cred) in attackers {
        for (what, prime, candidate) in [
            ("A as the candidate", &b.org, &a.org),
            ("A as the prime", &a.org, &b.org),
        ] {
            for validate_only in [true, false] {
                let label = format!(
                    "MergeOrganizations {what} ({}) by B's {role}",
                    if validate_only { "preview" } else { "merge" }
                );
                let rid = if validate_only {
                    String::new()
                } else {
                    uuid::Uuid::new_v4().to_string()
                };
                let req = body(prime, candidate, validate_only, &rid);
                let twin = disguised(&req, &[&a.org]);
                sent += 2;
                f.operations += 1;
                let r = call(h, &target(), req, cred).await;
                let unknown = call(h, &target(), twin, cred).await;
                let code = r.as_ref().map_or_else(Status::code, |_| Code::Ok);
                *codes.entry(format!("{code:?}")).or_default() += 1;
                match (&r, &unknown) {
                    (Ok(bytes), _) => {
                        f.leaks += 1;
                        let plan = org_api::MergeOrganizationsResponse::decode(bytes.as_slice())
                            .ok()
                            .and_then(|x| x.plan);
                        f.failures.push(format!(
                            "{label}: answered OK{} (plan: {plan:?})",
                            if contains_any(bytes, &hidden) {
                                " with A's data"
                            } else {
                                ""
                            }
                        ));
                    }
                    (Err(s), u) => {
                        let named = contains_any(s.message().as_bytes(), &hidden)
                            || contains_any(s.details(), &hidden);
                        if named {
                            f.leaks += 1;
                            f.failures.push(format!(
                                "{label}: the refusal names A's data: {:?} {}",
                                s.code(),
                                s.message()
                            ));
                        }
                        let same = u.as_ref().err().is_some_and(|u| {
                            as_unknown(s, &a.org)
                                == (u.code(), u.message().to_owned(), u.details().to_vec())
                        });
                        if !same {
                            f.leaks += 1;
                            f.failures.push(format!(
                                "{label}: {:?} {:?}, but for an unknown id of the same shape {:?}: \
                                 A's organization can be told from a missing one",
                                s.code(),
                                s.message(),
                                u.as_ref()
                                    .map(|_| "OK")
                                    .map_err(|u| (u.code(), u.message()))
                            ));
                        }
                        let refused = matches!(s.code(), Code::NotFound | Code::PermissionDenied);
                        check(f, refused && !named && same, || {
                            format!(
                                "{label}: {:?} {} (expected NOT_FOUND or PERMISSION_DENIED, as \
                                 for a non-member; FAILED_PRECONDITION means A's preconditions \
                                 were judged before the tenant check)",
                                s.code(),
                                s.message()
                            )
                        });
                    }
                }
            }
        }
    }
    // Nothing of A changed, and nothing was written into A's log (ORG-10: only callers with
    // standing in an organization write refusals there, whatever refused them first).
    let mut after = snapshot(h, &a.org, &a_owner).await?;
    let written: Vec<_> = super::audit_rows(h, &a.org)
        .await?
        .into_iter()
        .filter(|x| !before_rows.contains(&x.id))
        .collect();
    f.operations += 2;
    check(f, written.is_empty(), || {
        let got: Vec<String> = written
            .iter()
            .map(|x| {
                format!(
                    "{} by {} {} ({} {})",
                    x.action, x.actor_kind, x.actor_id, x.status_code, x.error_reason
                )
            })
            .collect();
        format!(
            "MergeOrganizations attempts of B's callers wrote into A's audit log (ORG-10: an \
             outsider must not): {got:?}"
        )
    });
    after.audit_records -= written.len();
    check(f, after == before, || {
        format!("MergeOrganizations attacks changed tenant A: before {before:?}, after {after:?}")
    });
    for (org, name) in [(&b.org, "B"), (&b2, "B2")] {
        let o = snapshot(h, org, &b_owner).await?.org;
        f.operations += 1;
        check(
            f,
            o.state == org_api::OrganizationState::Active as i32
                && o.merged_into_organization_id.is_empty(),
            || format!("MergeOrganizations attacks changed {name}: {o:?}"),
        );
    }
    Ok(format!(
        "MergeOrganizations: A as candidate and as prime, preview and merge, x {} callers \
         ({sent} calls with the unknown-id twins), codes {codes:?}; nothing written into A's log",
        attackers.len(),
    ))
}
