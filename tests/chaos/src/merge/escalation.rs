//! MergeOrganizations in the escalation suite ([`crate::escalation`]): only the OWNER of both
//! organizations, signed in recently, merges them (rule ORG-15). A prime P (holding
//! `chaos.test` VERIFIED, every user's email domain) and a candidate C of one OWNER, and a
//! second candidate C2 of another user, so that only the role is wrong in each case:
//! - a member of both with each role below OWNER (ADMIN, BILLING, DEVELOPER, USER), preview
//!   and merge: PERMISSION_DENIED, and the merge refusal recorded as OUTCOME_FAILURE in both
//!   logs (ORG-10);
//! - the OWNER of P who is an ADMIN of C2 (absorbing an organization it only administers), and
//!   the OWNER of C2 who is an ADMIN of P (pushing its organization into one it administers):
//!   PERMISSION_DENIED;
//! - P's admin API key: refused (NOT_FOUND for C, which it cannot see, or PERMISSION_DENIED);
//! - the OWNER of both with a sign-in older than the re-authentication age: UNAUTHENTICATED.
//!
//! The OWNER's own preview answers a plan (so the refusals are about the caller), and P, C and
//! C2, their members, units, invites and domains are unchanged at the end.

use orgplane_platform::auth::USER_AUDIENCE;
use orgplane_proto::audit::v1::Outcome;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1::OrgRole;
use tonic::{Code, Status};

use super::{
    ACTION, Snapshot, audit_rows, body, check, create_org, expect, join, seed_user, snapshot,
    target, verified_domain,
};
use crate::Figures;
use crate::harness::Harness;
use crate::security::{Cred, call, create_api_key};

const OWNER: &str = "user_esc_merge_owner";
const OTHER: &str = "user_esc_merge_other";
const ROLES: [OrgRole; 4] = [
    OrgRole::Admin,
    OrgRole::Billing,
    OrgRole::Developer,
    OrgRole::User,
];

fn member_of_both(role: OrgRole) -> String {
    format!(
        "user_esc_merge_{}",
        role.as_str_name()
            .trim_start_matches("ORG_ROLE_")
            .to_lowercase()
    )
}

/// One attempt to merge `candidate` into `prime` with `cred`.
async fn attempt(
    h: &Harness,
    cred: &Cred,
    (prime, candidate): (&str, &str),
    validate_only: bool,
) -> Result<Vec<u8>, Status> {
    let rid = uuid::Uuid::new_v4().to_string();
    call(
        h,
        &target(),
        body(prime, candidate, validate_only, &rid),
        cred,
    )
    .await
}

/// The snapshots of `orgs`, without their audit logs (which the refusals write to).
async fn state(h: &Harness, orgs: &[(&str, &str)]) -> anyhow::Result<Vec<Snapshot>> {
    let mut out = Vec::new();
    for (org, owner) in orgs {
        let mut s = snapshot(h, org, &h.user_token(owner)?).await?;
        s.audit_records = 0;
        out.push(s);
    }
    Ok(out)
}

/// Runs the cases (module comment).
pub async fn run(h: &Harness, f: &mut Figures) -> anyhow::Result<()> {
    for u in [OWNER, OTHER]
        .into_iter()
        .map(str::to_owned)
        .chain(ROLES.iter().map(|r| member_of_both(*r)))
    {
        seed_user(h, &u).await?;
    }
    let owner = h.user_token(OWNER)?;
    let other = h.user_token(OTHER)?;
    let (p, _) = create_org(h, &owner, "Escalation merge prime").await?;
    let (c, _) = create_org(h, &owner, "Escalation merge candidate").await?;
    let (c2, _) = create_org(h, &other, "Escalation merge candidate 2").await?;
    verified_domain(h, &p, &owner, "chaos.test").await?;
    for role in ROLES {
        for org in [&p, &c] {
            join(h, &owner, org, &member_of_both(role), role).await?;
        }
    }
    join(h, &other, &c2, OWNER, OrgRole::Admin).await?;
    join(h, &owner, &p, OTHER, OrgRole::Admin).await?;
    let orgs = [
        (p.as_str(), OWNER),
        (c.as_str(), OWNER),
        (c2.as_str(), OTHER),
    ];
    let before = state(h, &orgs).await?;

    // The OWNER of both may: its preview answers a plan.
    let r = attempt(h, &Cred::Token(owner.clone()), (&p, &c), true).await;
    expect(
        f,
        "MergeOrganizations preview by the OWNER of both",
        &r,
        &[Code::Ok],
    );
    f.operations += 1;

    for role in ROLES {
        let user = member_of_both(role);
        let cred = Cred::Token(h.user_token(&user)?);
        for validate_only in [true, false] {
            let r = attempt(h, &cred, (&p, &c), validate_only).await;
            f.operations += 1;
            expect(
                f,
                &format!(
                    "MergeOrganizations ({}) by a {} of both",
                    if validate_only { "preview" } else { "merge" },
                    role.as_str_name()
                ),
                &r,
                &[Code::PermissionDenied],
            );
        }
    }
    for (name, cred, pair) in [
        (
            "the OWNER of the prime, ADMIN of the candidate",
            Cred::Token(owner.clone()),
            (&p, &c2),
        ),
        (
            "the OWNER of the candidate, ADMIN of the prime",
            Cred::Token(other.clone()),
            (&p, &c2),
        ),
    ] {
        for validate_only in [true, false] {
            let r = attempt(h, &cred, (pair.0, pair.1), validate_only).await;
            f.operations += 1;
            expect(
                f,
                &format!("MergeOrganizations by {name} (validate_only {validate_only})"),
                &r,
                &[Code::PermissionDenied],
            );
        }
    }
    let key = create_api_key(h, OWNER, &p, None, id_api::ApiKeyKind::Admin).await?;
    for validate_only in [true, false] {
        let r = attempt(h, &Cred::ApiKey(key.clone()), (&p, &c), validate_only).await;
        f.operations += 1;
        expect(
            f,
            &format!(
                "MergeOrganizations by the prime's admin API key (validate_only {validate_only})"
            ),
            &r,
            &[Code::NotFound, Code::PermissionDenied],
        );
    }
    // A sign-in a day old: the re-authentication check (as DeleteOrganization).
    let mut claims = h.claims(OWNER, USER_AUDIENCE);
    claims.sid = Some(format!("ses_chaos_{OWNER}"));
    claims.auth_time = Some(claims.iat - 86_400);
    let stale = Cred::Token(h.sign(&claims)?);
    let r = attempt(h, &stale, (&p, &c), false).await;
    f.operations += 1;
    expect(
        f,
        "MergeOrganizations by the OWNER of both signed in a day ago",
        &r,
        &[Code::Unauthenticated],
    );

    // Nothing changed.
    let after = state(h, &orgs).await?;
    f.operations += 1;
    check(f, after == before, || {
        format!("refused merges changed an organization: before {before:?}, after {after:?}")
    });
    // Each refused merge by a member of both is recorded in both logs (ORG-10).
    let mut logs = Vec::new();
    for org in [&p, &c] {
        logs.push(audit_rows(h, org).await?);
    }
    for role in ROLES {
        let user = member_of_both(role);
        f.operations += 1;
        let per_log: Vec<usize> = logs
            .iter()
            .map(|rows| {
                rows.iter()
                    .filter(|x| {
                        x.action == ACTION
                            && x.actor_id == user
                            && x.outcome == Outcome::Failure as i32
                            && x.status_code == "PERMISSION_DENIED"
                    })
                    .count()
            })
            .collect();
        check(f, per_log == [1, 1], || {
            format!(
                "the refused MergeOrganizations of a {} of both: {per_log:?} OUTCOME_FAILURE \
                 records in the prime's and the candidate's logs (expected one in each)",
                role.as_str_name()
            )
        });
    }
    Ok(())
}
