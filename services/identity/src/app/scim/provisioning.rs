//! The membership changes SCIM writes owe the organization service (rule ID-14), kept as rows
//! of `scim_provisioning` written in the SCIM write's own transaction: the write never depends
//! on the organization service answering, and nothing it owes is lost. [`deliver_due`] sends
//! them (`ProvisionMember` with `set_role`, or `DeprovisionMember`) with their `request_id`,
//! so a row delivered twice changes the membership once. The SCIM handler calls it right after
//! its commit; a background task retries every second. One user's rows go in creation order:
//! a later change never overtakes an earlier one still owed. Failures back off exponentially
//! (capped at a minute); a refusal that cannot change by retrying (FAILED_PRECONDITION such as
//! `OWNERSHIP_TRANSFER_REQUIRED`, NOT_FOUND, INVALID_ARGUMENT) is recorded as done with its
//! error and logged.

use std::collections::HashSet;
use std::time::Duration;

use orgplane_platform::clients::organization::{ExistingRole, MemberProvision};
use orgplane_platform::error::Code;
use orgplane_platform::host::CancellationToken;
use orgplane_platform::{ApiError, ApiResult, Call};
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DbErr, QueryOrder, QuerySelect, Set};

use crate::app::App;
use crate::store::entity::scim_provisioning;

/// The `source` the organization service records for these calls.
const SOURCE: &str = "scim";
/// `action` of a ProvisionMember row.
const PROVISION: &str = "provision";
/// `action` of a DeprovisionMember row.
const DEPROVISION: &str = "deprovision";
/// The first retry delay; doubled per failed attempt.
const FIRST_BACKOFF_MS: i64 = 250;
/// The longest retry delay.
const MAX_BACKOFF_MS: i64 = 60_000;
/// How often the background task looks for due rows.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// The most rows one pass reads.
const BATCH: u64 = 500;

/// What a SCIM write owes the organization service for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// ProvisionMember with `set_role`: member with this role.
    Provision(OrgRole),
    /// DeprovisionMember: no longer a member.
    Deprovision,
}

/// The request id of the change that brought SCIM user `scim_user_id` to `version`: one
/// change, one id.
pub fn request_id(scim_user_id: &str, version: i64) -> String {
    format!("scim:{scim_user_id}:{version}")
}

/// Records, in the caller's transaction, that `owed` must reach the organization service for
/// `user_id` with `request_id` (unique per change).
pub async fn owe(
    db: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
    request_id: &str,
    owed: Owed,
    now_ms: i64,
) -> Result<(), DbErr> {
    let (action, role) = match owed {
        Owed::Provision(role) => (PROVISION, role as i32),
        Owed::Deprovision => (DEPROVISION, 0),
    };
    scim_provisioning::ActiveModel {
        request_id: Set(request_id.to_owned()),
        organization_id: Set(organization_id.to_owned()),
        user_id: Set(user_id.to_owned()),
        action: Set(action.to_owned()),
        role: Set(role),
        create_time_ms: Set(now_ms),
        attempts: Set(0),
        next_attempt_ms: Set(now_ms),
        done_time_ms: Set(None),
        last_error: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The version part of a row's request id (rows of one user are ordered by it after their
/// creation time).
fn version_of(row: &scim_provisioning::Model) -> i64 {
    row.request_id
        .rsplit(':')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether retrying `e` cannot change the answer.
fn is_permanent(e: &ApiError) -> bool {
    matches!(
        e.code(),
        Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument | Code::AlreadyExists
    )
}

/// The delay before attempt `attempts + 1`.
fn backoff_ms(attempts: i32) -> i64 {
    let shift = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    FIRST_BACKOFF_MS
        .saturating_mul(1_i64 << shift)
        .min(MAX_BACKOFF_MS)
}

/// Delivers what is due (new rows at once, failed ones after their backoff); returns how many
/// were delivered.
pub async fn deliver_due(app: &App) -> usize {
    // One pass at a time in this process: two passes could interleave one user's rows.
    let _pass = app.scim_delivery.lock().await;
    match deliver_pass(app).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e.message(), "SCIM provisioning delivery pass failed");
            0
        }
    }
}

async fn deliver_pass(app: &App) -> ApiResult<usize> {
    let now = app.now_ms();
    let rows = scim_provisioning::Entity::find()
        .filter(scim_provisioning::Column::DoneTimeMs.is_null())
        .order_by_asc(scim_provisioning::Column::CreateTimeMs)
        .limit(BATCH)
        .all(&app.db)
        .await?;
    let mut rows = rows;
    rows.sort_by_key(|r| (r.create_time_ms, version_of(r)));
    let mut blocked: HashSet<(String, String)> = HashSet::new();
    let mut delivered = 0;
    let call = Call::system();
    for row in rows {
        let subject = (row.organization_id.clone(), row.user_id.clone());
        if blocked.contains(&subject) {
            continue;
        }
        if row.next_attempt_ms > now {
            // An earlier change of this user waits for its retry: later ones wait behind it.
            blocked.insert(subject);
            continue;
        }
        match send(app, &call, &row).await {
            Ok(()) => {
                finish(app, &row, None).await?;
                delivered += 1;
            }
            Err(e) if is_permanent(&e) => {
                tracing::warn!(
                    request_id = %row.request_id,
                    organization_id = %row.organization_id,
                    user_id = %row.user_id,
                    action = %row.action,
                    reason = %e.reason(),
                    error = %e.message(),
                    "the organization refused a SCIM membership change; not retried"
                );
                finish(app, &row, Some(&e)).await?;
            }
            Err(e) => {
                let attempts = row.attempts.saturating_add(1);
                scim_provisioning::Entity::update_many()
                    .col_expr(scim_provisioning::Column::Attempts, Expr::value(attempts))
                    .col_expr(
                        scim_provisioning::Column::NextAttemptMs,
                        Expr::value(app.now_ms().saturating_add(backoff_ms(row.attempts))),
                    )
                    .col_expr(
                        scim_provisioning::Column::LastError,
                        Expr::value(describe(&e)),
                    )
                    .filter(scim_provisioning::Column::RequestId.eq(&row.request_id))
                    .exec(&app.db)
                    .await?;
                tracing::debug!(
                    request_id = %row.request_id,
                    attempts,
                    error = %e.message(),
                    "SCIM membership change not delivered yet"
                );
                blocked.insert(subject);
            }
        }
    }
    Ok(delivered)
}

fn describe(e: &ApiError) -> String {
    format!("{:?} {}: {}", e.code(), e.reason(), e.message())
}

async fn send(app: &App, call: &Call, row: &scim_provisioning::Model) -> ApiResult<()> {
    if row.action == DEPROVISION {
        app.organizations
            .deprovision_member(
                call,
                &row.organization_id,
                &row.user_id,
                &row.request_id,
                SOURCE,
            )
            .await?;
        return Ok(());
    }
    let role = OrgRole::try_from(row.role).unwrap_or(OrgRole::User);
    app.organizations
        .provision_member(
            call,
            MemberProvision {
                organization_id: &row.organization_id,
                user_id: &row.user_id,
                role,
                existing: ExistingRole::Set,
                request_id: &row.request_id,
                source: SOURCE,
            },
        )
        .await?;
    Ok(())
}

async fn finish(
    app: &App,
    row: &scim_provisioning::Model,
    error: Option<&ApiError>,
) -> ApiResult<()> {
    scim_provisioning::Entity::update_many()
        .col_expr(
            scim_provisioning::Column::DoneTimeMs,
            Expr::value(Some(app.now_ms())),
        )
        .col_expr(
            scim_provisioning::Column::Attempts,
            Expr::value(row.attempts.saturating_add(1)),
        )
        .col_expr(
            scim_provisioning::Column::LastError,
            Expr::value(error.map(describe)),
        )
        .filter(scim_provisioning::Column::RequestId.eq(&row.request_id))
        .exec(&app.db)
        .await?;
    Ok(())
}

/// Retries what is owed every [`RETRY_INTERVAL`] until `shutdown`.
pub fn spawn_delivery(app: std::sync::Arc<App>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETRY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    deliver_due(&app).await;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_at_a_minute() {
        assert_eq!(backoff_ms(0), 250);
        assert_eq!(backoff_ms(1), 500);
        assert_eq!(backoff_ms(3), 2_000);
        assert_eq!(backoff_ms(8), 60_000);
        assert_eq!(backoff_ms(i32::MAX), 60_000);
    }

    #[test]
    fn request_ids_name_the_user_and_version() {
        assert_eq!(request_id("scimu_1", 7), "scim:scimu_1:7");
    }
}
