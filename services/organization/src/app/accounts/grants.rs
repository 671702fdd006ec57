//! Account members (access granted to a member through an organization, INDEPENDENT accounts
//! included) and compliance defaults (rule ACC-5: the designation new accounts take).

use orgplane_platform::Call;
use orgplane_platform::audit::{AuditImage, Entry, proto_json};
use orgplane_platform::convert::{check_etag, etag, etag_mismatch, timestamp_ms as ts};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::organization::v1 as proto;
use orgplane_proto::organization::v1::{AccountType, ComplianceDesignation};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::is_member;
use crate::app::access::Access;
use crate::app::{App, Page};
use crate::domain::accounts::{designation, type_name};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::required;
use crate::domain::{Error, Result};
use crate::store::query::keyset;
use crate::store::{account_member, compliance_default};

/// ListAccountMembers.
#[derive(Debug, Clone, Default)]
pub struct ListAccountMembers {
    /// The account.
    pub account_id: String,
    /// The organization whose grants to list.
    pub organization_id: String,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
}

/// The API form of a grant.
pub fn member_message(m: &account_member::Model) -> proto::AccountMember {
    proto::AccountMember {
        account_id: m.account_id.clone(),
        organization_id: m.organization_id.clone(),
        user_id: m.user_id.clone(),
        create_time: Some(ts(m.create_time_ms)),
    }
}

/// The API form of compliance defaults (version 0: never set).
pub fn defaults_message(d: &compliance_default::Model) -> proto::ComplianceDefaults {
    proto::ComplianceDefaults {
        organization_id: d.organization_id.clone(),
        designation: d.designation,
        update_time: (d.version > 0).then(|| ts(d.update_time_ms)),
        etag: etag(d.version),
    }
}

impl AuditImage for account_member::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&member_message(self))
    }
}

impl AuditImage for compliance_default::Model {
    fn audit_image(&self) -> serde_json::Value {
        proto_json(&defaults_message(self))
    }
}

impl App {
    /// `organization_id`'s compliance defaults as `db` sees them: NONE, version 0 while never
    /// set.
    pub(crate) async fn compliance_defaults_in<C: ConnectionTrait>(
        &self,
        db: &C,
        organization_id: &str,
    ) -> Result<compliance_default::Model> {
        Ok(
            compliance_default::Entity::find_by_id(organization_id.to_owned())
                .one(db)
                .await?
                .unwrap_or_else(|| compliance_default::Model {
                    organization_id: organization_id.to_owned(),
                    designation: ComplianceDesignation::None as i32,
                    update_time_ms: 0,
                    version: 0,
                }),
        )
    }

    /// GetComplianceDefaults: any member.
    pub async fn get_compliance_defaults(
        &self,
        call: &Call,
        organization_id: &str,
    ) -> Result<compliance_default::Model> {
        required("organization_id", organization_id)?;
        let access =
            Access::resolve(&self.db, &call.principal, organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::Read)?;
        self.compliance_defaults_in(&self.db, &access.org.id).await
    }

    /// UpdateComplianceDefaults (rule ACC-5): accounts created from now on take it; existing
    /// ones keep theirs.
    pub async fn update_compliance_defaults(
        &self,
        call: &Call,
        organization_id: &str,
        designation_number: i32,
        given_etag: &str,
    ) -> Result<compliance_default::Model> {
        require_caller(&call.principal)?;
        required("organization_id", organization_id)?;
        let d = designation("designation", designation_number)?;
        let access =
            Access::resolve(&self.db, &call.principal, organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        let before = self
            .compliance_defaults_in(&self.db, &access.org.id)
            .await?;
        check_etag(given_etag, before.version, "compliance_defaults")?;
        let after = compliance_default::Model {
            designation: d as i32,
            update_time_ms: self.now_ms(),
            version: before.version + 1,
            ..before.clone()
        };
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        let stale = || Error::from(etag_mismatch("compliance_defaults"));
        if before.version == 0 {
            compliance_default::Entity::insert(compliance_default::ActiveModel::from(
                after.clone(),
            ))
            .exec(&*txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    stale()
                } else {
                    e.into()
                }
            })?;
        } else {
            let updated = compliance_default::Entity::update_many()
                .col_expr(
                    compliance_default::Column::Designation,
                    Expr::value(after.designation),
                )
                .col_expr(
                    compliance_default::Column::UpdateTimeMs,
                    Expr::value(after.update_time_ms),
                )
                .col_expr(
                    compliance_default::Column::Version,
                    Expr::value(after.version),
                )
                .filter(
                    compliance_default::Column::OrganizationId.eq(after.organization_id.clone()),
                )
                .filter(compliance_default::Column::Version.eq(before.version))
                .exec(&*txn)
                .await?;
            if updated.rows_affected == 0 {
                return Err(stale());
            }
        }
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &after.organization_id,
                    "compliance_defaults.update",
                    "compliance_defaults",
                    &after.organization_id,
                )
                .change(Some(&before), Some(&after)),
            )
            .await?;
        txn.commit().await?;
        Ok(after)
    }

    /// AddAccountMember: OWNER/ADMIN grant a member access to an account in their list
    /// (not while it is PENDING).
    pub async fn add_account_member(
        &self,
        call: &Call,
        account_id: &str,
        organization_id: &str,
        user_id: &str,
    ) -> Result<account_member::Model> {
        required("organization_id", organization_id)?;
        required("user_id", user_id)?;
        let r = self.reach(call, account_id, organization_id).await?;
        r.require_admin()?;
        let kind = r.view.kind();
        if kind == AccountType::Pending as i32 {
            return Err(Error::AccountNotManaged {
                account_id: account_id.to_owned(),
                kind: type_name(kind),
            });
        }
        let org_id = r.view.organization_id.clone();
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        if !is_member(&*txn, &org_id, user_id).await? {
            return Err(Error::NotOrganizationMember {
                user_id: user_id.to_owned(),
            });
        }
        let m = account_member::Model {
            organization_id: org_id.clone(),
            account_id: account_id.to_owned(),
            user_id: user_id.to_owned(),
            create_time_ms: self.now_ms(),
        };
        account_member::Entity::insert(account_member::ActiveModel::from(m.clone()))
            .exec(&*txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    Error::AccountMemberExists {
                        account_id: account_id.to_owned(),
                        user_id: user_id.to_owned(),
                    }
                } else {
                    e.into()
                }
            })?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org_id, "account.add_member", "account_member", user_id)
                    .change(None, Some(&m)),
            )
            .await?;
        txn.commit().await?;
        Ok(m)
    }

    /// ListAccountMembers: as GetAccount, oldest grant first.
    pub async fn list_account_members(
        &self,
        call: &Call,
        cmd: ListAccountMembers,
    ) -> Result<Page<account_member::Model>> {
        required("organization_id", &cmd.organization_id)?;
        let size = orgplane_platform::pagination::page_size(cmd.page_size)?;
        let r = self
            .reach(call, &cmd.account_id, &cmd.organization_id)
            .await?;
        let org_id = r.view.organization_id;
        let scope = format!("ListAccountMembers|{org_id}|{}", cmd.account_id);
        let cursor: Option<(i64, String)> =
            self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
        let mut query = account_member::Entity::find()
            .filter(account_member::Column::OrganizationId.eq(org_id.clone()))
            .filter(account_member::Column::AccountId.eq(cmd.account_id.clone()));
        if let Some((t, id)) = cursor {
            query = query.filter(keyset(
                account_member::Column::CreateTimeMs,
                t,
                account_member::Column::UserId,
                id,
                false,
            ));
        }
        let rows = query
            .order_by_asc(account_member::Column::CreateTimeMs)
            .order_by_asc(account_member::Column::UserId)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next) = self.runtime.page_tokens.page(&scope, rows, size, |m| {
            (m.create_time_ms, m.user_id.clone())
        });
        Ok(Page {
            items: rows,
            next_page_token: next,
        })
    }

    /// RemoveAccountMember: OWNER/ADMIN withdraw a grant.
    pub async fn remove_account_member(
        &self,
        call: &Call,
        account_id: &str,
        organization_id: &str,
        user_id: &str,
    ) -> Result<()> {
        required("organization_id", organization_id)?;
        required("user_id", user_id)?;
        let r = self.reach(call, account_id, organization_id).await?;
        r.require_admin()?;
        let org_id = r.view.organization_id;
        let not_found = || Error::not_found("account_member", user_id);
        let before = account_member::Entity::find_by_id((
            org_id.clone(),
            account_id.to_owned(),
            user_id.to_owned(),
        ))
        .one(&self.db)
        .await?
        .ok_or_else(not_found)?;
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        let deleted = account_member::Entity::delete_many()
            .filter(account_member::Column::OrganizationId.eq(org_id.clone()))
            .filter(account_member::Column::AccountId.eq(account_id.to_owned()))
            .filter(account_member::Column::UserId.eq(user_id.to_owned()))
            .exec(&*txn)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(not_found());
        }
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org_id, "account.remove_member", "account_member", user_id)
                    .change(Some(&before), None),
            )
            .await?;
        txn.commit().await?;
        Ok(())
    }
}
