//! The consumer of the organization service's events: keeps the shared org-role replica, and on
//! `OrganizationPurged` disables that organization's API keys in the same transaction, publishing
//! `ApiKeyStatusChanged` for each (rule ID-7).
//!
//! On `OrganizationsMerged` (rule ORG-15) the candidate's API keys become keys of the prime in
//! the same transaction (admin keys admin keys of the prime; workspace keys keep their workspace,
//! which moved with the merge), with one summary record in the prime's audit log; nothing is
//! published (the workspace service moves its key replica from the same event). The candidate's
//! SCIM tokens and SSO connections need no write: the replica now holds the candidate MERGED
//! (not ACTIVE), and every lookup of them already answers as for a gone organization (SCIM
//! `TOKEN_INVALID`, SSO connection not found). Sessions are kept. The prime's sign-in rules
//! apply to the moved members from the replica (their role is in the prime now).

use futures::future::BoxFuture;
use orgplane_platform::ApiResult;
use orgplane_platform::audit::{AuditLogWriter, Entry};
use orgplane_platform::clock::SharedClock;
use orgplane_platform::events::Outbox;
use orgplane_platform::events::handlers::OrgEventsExtension;
use orgplane_platform::replica::{Merge, org_row};
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{ApiKeyStatusChanged, Event};
use orgplane_proto::identity::v1::ApiKeyStatus;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ConnectionTrait, DatabaseTransaction};

use crate::store::entity::api_key;

/// What identity adds to the shared role replica's handling of organization events (wrapped in
/// `OrgRoleEvents`): API keys disabled on purge.
#[derive(Debug, Clone)]
pub struct OrgEvents {
    /// Identity's outbox (for `ApiKeyStatusChanged`).
    pub outbox: Outbox,
    /// Identity's audit log.
    pub audit: AuditLogWriter,
    /// The clock.
    pub clock: SharedClock,
}

impl OrgEvents {
    /// Disables every active key of purged organization `org` inside `txn` and publishes
    /// `ApiKeyStatusChanged` for each.
    pub async fn disable_org_keys<C: ConnectionTrait>(
        &self,
        txn: &C,
        org: &str,
        request_id: &str,
    ) -> ApiResult<()> {
        let keys = api_key::Entity::find()
            .filter(api_key::Column::OrganizationId.eq(org))
            .filter(api_key::Column::Status.eq(ApiKeyStatus::Active as i32))
            .all(txn)
            .await?;
        if keys.is_empty() {
            return Ok(());
        }
        let now = self.clock.now().timestamp_millis();
        api_key::Entity::update_many()
            .col_expr(
                api_key::Column::Status,
                Expr::value(ApiKeyStatus::Inactive as i32),
            )
            .col_expr(api_key::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(
                api_key::Column::Version,
                Expr::col(api_key::Column::Version).add(1),
            )
            .filter(api_key::Column::OrganizationId.eq(org))
            .filter(api_key::Column::Status.eq(ApiKeyStatus::Active as i32))
            .exec(txn)
            .await?;
        self.audit
            .record_system(
                txn,
                Entry::new(org, "api_key.disable_on_purge", "organization", org)
                    .with_details(serde_json::json!({ "disabledKeys": keys.len() })),
            )
            .await?;
        for k in keys {
            self.outbox
                .append(
                    txn,
                    Payload::ApiKeyStatusChanged(ApiKeyStatusChanged {
                        api_key_id: k.id,
                        organization_id: org.to_owned(),
                        active: false,
                    }),
                    request_id,
                )
                .await?;
        }
        Ok(())
    }

    /// Moves every API key of the merged candidate to the prime inside `txn` (rule ORG-15);
    /// a second delivery finds no key left in the candidate and writes nothing.
    pub async fn move_org_keys<C: ConnectionTrait>(&self, txn: &C, merge: &Merge) -> ApiResult<()> {
        let candidate = merge.candidate_organization_id.as_str();
        let prime = merge.prime_organization_id.as_str();
        let keys = api_key::Entity::find()
            .filter(api_key::Column::OrganizationId.eq(candidate))
            .all(txn)
            .await?;
        if keys.is_empty() {
            return Ok(());
        }
        let now = self.clock.now().timestamp_millis();
        api_key::Entity::update_many()
            .col_expr(api_key::Column::OrganizationId, Expr::value(prime))
            .col_expr(api_key::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(
                api_key::Column::Version,
                Expr::col(api_key::Column::Version).add(1),
            )
            .filter(api_key::Column::OrganizationId.eq(candidate))
            .exec(txn)
            .await?;
        let mut ids: Vec<String> = keys.into_iter().map(|k| k.id).collect();
        ids.sort();
        self.audit
            .record_system(
                txn,
                Entry::new(prime, "api_key.move_on_merge", "organization", prime).with_details(
                    serde_json::json!({
                        "candidateOrganizationId": candidate,
                        "movedKeys": ids.len(),
                        "apiKeyIds": ids,
                    }),
                ),
            )
            .await?;
        Ok(())
    }

    async fn announce(&self) {
        match self.outbox.head().await {
            Ok(head) => self.outbox.committed(head.revision),
            Err(e) => tracing::warn!(error = %e, "reading the outbox head failed"),
        }
    }
}

impl OrgEventsExtension for OrgEvents {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        event: &'a Event,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            match &event.payload {
                Some(Payload::OrganizationPurged(e)) => {
                    self.disable_org_keys(txn, &e.organization_id, &event.request_id)
                        .await?;
                }
                Some(Payload::OrganizationsMerged(e)) => {
                    if let Some(merge) = Merge::of(e) {
                        self.move_org_keys(txn, &merge).await?;
                    }
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn reconcile_merges<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        merges: &'a [Merge],
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            for merge in merges {
                self.move_org_keys(txn, merge).await?;
            }
            Ok(())
        })
    }

    fn reconcile<'a>(&'a self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            // Organizations that vanished from the snapshot were purged while we were away.
            let live: std::collections::HashSet<String> = org_row::Entity::find()
                .all(txn)
                .await?
                .into_iter()
                .map(|o| o.organization_id)
                .collect();
            let orgs: std::collections::BTreeSet<String> = api_key::Entity::find()
                .filter(api_key::Column::Status.eq(ApiKeyStatus::Active as i32))
                .all(txn)
                .await?
                .into_iter()
                .map(|k| k.organization_id)
                .filter(|o| !live.contains(o))
                .collect();
            for org in orgs {
                self.disable_org_keys(txn, &org, "").await?;
            }
            Ok(())
        })
    }

    fn committed<'a>(&'a self, events: &'a [Event], resynced: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if resynced {
                self.announce().await;
                return;
            }
            if events
                .iter()
                .any(|e| matches!(e.payload, Some(Payload::OrganizationPurged(_))))
            {
                self.announce().await;
            }
        })
    }
}
