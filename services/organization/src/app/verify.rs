//! VerifyDomain (rule ORG-14): one DNS check of a domain's challenge record, stored with what it
//! found. The lookup runs outside the database transaction; the write that follows is
//! conditional on the version read before it, so a concurrent change (another check, a policy
//! change, a removal) wins cleanly and this call answers ABORTED. Whether two organizations end
//! up holding one domain VERIFIED with an enforcing policy is not checked here but by the
//! database's partial unique index, which no interleaving can get around.

use std::time::Duration;

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::convert::etag_mismatch;
use orgplane_platform::events::WriteUnit;
use orgplane_proto::organization::v1::{DomainCheckOutcome, DomainState};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::domains::{DomainView, changed, claimed_or};
use super::{App, Revised};
use crate::domain::domains as rules;
use crate::domain::{Error, Result};
use crate::store::domain;

impl App {
    /// VerifyDomain (rule ORG-14): checks the record now. FOUND makes the domain VERIFIED,
    /// anything else FAILED (a VERIFIED domain loses its verification); a change of
    /// verification publishes `DomainChanged`, whose revision is answered (0 when none).
    pub async fn verify_domain(&self, call: &Call, domain_id: &str) -> Result<Revised<DomainView>> {
        let (before, _) = self.domain_access(call, domain_id).await?;
        let now = self.now_ms();
        let before_view = self.domain_view(before.clone());
        if before_view.state() == DomainState::Expired {
            return Err(Error::DomainExpired {
                domain_id: before.id.clone(),
            });
        }
        let interval_ms =
            i64::try_from(self.config.domain_check_interval_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX);
        if let Some(last) = before.check_time_ms {
            let next = last.saturating_add(interval_ms);
            if now < next {
                return Err(Error::CheckedTooOften {
                    retry: Duration::from_millis(u64::try_from(next - now).unwrap_or(1)),
                });
            }
        }
        let name = before_view.record_name.clone();
        let expected = rules::challenge_value(&before.token);
        let answer = self.dns.txt(&name).await;
        let check = rules::judge(answer, &name, &expected);
        let found = check.outcome == DomainCheckOutcome::Found;
        let was = before.state == DomainState::Verified as i32;
        // A resolver outage proves nothing about the record: a VERIFIED domain stays VERIFIED
        // (its policy in force) and the check is stored; only an answer without the record
        // ends verification.
        let verified = found || (was && check.outcome == DomainCheckOutcome::LookupFailed);
        let now = self.now_ms();
        let mut after = before.clone();
        after.state = if verified {
            DomainState::Verified
        } else {
            DomainState::Failed
        } as i32;
        after.check_outcome = check.outcome as i32;
        after.check_found = serde_json::to_string(&check.found)
            .map_err(|e| Error::Api(orgplane_platform::ApiError::internal(e)))?;
        after.check_detail = check.detail;
        after.check_time_ms = Some(now);
        after.update_time_ms = now;
        if found {
            after.verify_time_ms = Some(now);
        }
        after.version += 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        let updated = domain::Entity::update_many()
            .col_expr(domain::Column::State, Expr::value(after.state))
            .col_expr(
                domain::Column::CheckOutcome,
                Expr::value(after.check_outcome),
            )
            .col_expr(
                domain::Column::CheckFound,
                Expr::value(after.check_found.clone()),
            )
            .col_expr(
                domain::Column::CheckDetail,
                Expr::value(after.check_detail.clone()),
            )
            .col_expr(
                domain::Column::CheckTimeMs,
                Expr::value(after.check_time_ms),
            )
            .col_expr(domain::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(
                domain::Column::VerifyTimeMs,
                Expr::value(after.verify_time_ms),
            )
            .col_expr(domain::Column::Version, Expr::value(after.version))
            .filter(domain::Column::Id.eq(before.id.clone()))
            .filter(domain::Column::Version.eq(before.version))
            .exec(&*txn)
            .await
            .map_err(|e| claimed_or(e, &before.domain_name))?;
        if updated.rows_affected == 0 {
            return Err(etag_mismatch("domain").into());
        }
        let after_view = self.domain_view(after);
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &before.organization_id,
                    "domain.verify",
                    "domain",
                    &before.id,
                )
                .change(Some(&before_view), Some(&after_view)),
            )
            .await?;
        if was != verified {
            txn.append(changed(&after_view.domain, after_view.state()))
                .await?;
        }
        let revision = txn.commit().await?.unwrap_or(0);
        Ok(Revised {
            value: after_view,
            revision,
        })
    }
}
