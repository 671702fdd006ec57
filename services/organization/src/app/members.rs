//! Members and ownership (rules ORG-4, ORG-5): list, get, change role, remove, transfer.

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::convert::{check_etag, etag_mismatch};
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{MemberRemoved, MemberRoleChanged, OwnershipTransferred, event};
use orgplane_proto::organization::v1::OrgRole;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};

use super::access::{Access, Membership};
use super::{App, MemberView, Page, Revised};
use crate::domain::authz::{Deleted, require_caller, resolve_me};
use crate::domain::validate::{self, required, role_of};
use crate::domain::{Error, Result};
use crate::store::query::keyset;
use crate::store::{member, organization};

/// ListMembers.
#[derive(Debug, Clone, Default)]
pub struct ListMembers {
    /// The organization.
    pub organization_id: String,
    /// `OrgRole` filter as its number (0: every role).
    pub role: i32,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
}

/// UpdateMemberRole (ORG-4, ORG-5).
#[derive(Debug, Clone, Default)]
pub struct UpdateMemberRole {
    /// The organization.
    pub organization_id: String,
    /// The member, or `me`.
    pub user_id: String,
    /// The new `OrgRole` as its number.
    pub role: i32,
    /// The member's etag read, or empty.
    pub etag: String,
}

/// What TransferOwnership changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// The organization, with its new owner.
    pub organization: organization::Model,
    /// The new OWNER.
    pub new_owner: MemberView,
    /// The previous OWNER, now ADMIN.
    pub previous_owner: MemberView,
    /// The revision of `OwnershipTransferred`.
    pub revision: i64,
}

impl App {
    async fn find_member(&self, organization_id: &str, user_id: &str) -> Result<member::Model> {
        let m = member::Entity::find_by_id((organization_id.to_owned(), user_id.to_owned()))
            .one(&self.db)
            .await?;
        found(m, user_id)
    }

    /// The caller's access to a visible organization with member `user_id` read in the same
    /// statement (GetMember, UpdateMemberRole, RemoveMember); the caller judges the access first.
    async fn with_member(
        &self,
        call: &Call,
        organization_id: &str,
        user_id: &str,
    ) -> Result<(Access, Option<Membership>)> {
        Access::resolve_with_member(
            &self.db,
            &call.principal,
            organization_id,
            Deleted::Hidden,
            user_id,
        )
        .await
    }

    /// Changes `before`'s role to `new_role` in `txn`, on the version read (checked at the
    /// unit's commit: ABORTED `ETAG_MISMATCH` if it changed meanwhile), and publishes
    /// `MemberRoleChanged`: the one path by which a member's role changes (UpdateMemberRole,
    /// ProvisionMember's `set_role`). Answers the member after the change; the caller audits it.
    pub(super) async fn set_member_role_in(
        &self,
        txn: &mut WriteUnit,
        before: &member::Model,
        new_role: OrgRole,
    ) -> Result<member::Model> {
        let mut after = before.clone();
        after.role = new_role as i32;
        after.update_time_ms = self.now_ms();
        after.version += 1;
        // Checked at commit, in the round trip of the unit's rows: a member changed or removed
        // since `before` was read fails the commit with ETAG_MISMATCH and keeps nothing.
        let update = member::Entity::update_many()
            .col_expr(member::Column::Role, Expr::value(after.role))
            .col_expr(
                member::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .col_expr(member::Column::Version, Expr::value(after.version))
            .filter(member::Column::OrganizationId.eq(before.organization_id.clone()))
            .filter(member::Column::UserId.eq(before.user_id.clone()))
            .filter(member::Column::Version.eq(before.version))
            .build(txn.get_database_backend());
        txn.change_at_commit(update, 1, etag_mismatch("member"));
        txn.append(event::Payload::MemberRoleChanged(MemberRoleChanged {
            organization_id: before.organization_id.clone(),
            user_id: before.user_id.clone(),
            old_role: role_of(before.role) as i32,
            new_role: new_role as i32,
        }))
        .await?;
        Ok(after)
    }

    /// Ends `before`'s membership in `txn` and publishes `MemberRemoved`, from which every
    /// consumer drops the member (the workspace service their workspace roles, rule WS-9): the
    /// one path by which a member leaves (RemoveMember, DeprovisionMember). The accounts they
    /// own there pass to the OWNER (rule ACC-3; audited here, with `AccountChanged`). False
    /// when the membership was gone already (nothing published); the caller audits the
    /// membership.
    pub(super) async fn delete_member_in(
        &self,
        txn: &mut WriteUnit,
        call: &Call,
        before: &member::Model,
    ) -> Result<bool> {
        let deleted = member::Entity::delete_many()
            .filter(member::Column::OrganizationId.eq(before.organization_id.clone()))
            .filter(member::Column::UserId.eq(before.user_id.clone()))
            .exec(&**txn)
            .await?;
        if deleted.rows_affected == 0 {
            return Ok(false);
        }
        txn.append(event::Payload::MemberRemoved(MemberRemoved {
            organization_id: before.organization_id.clone(),
            user_id: before.user_id.clone(),
            old_role: before.role,
        }))
        .await?;
        let handed = self
            .hand_over_accounts(&**txn, &before.organization_id, &before.user_id)
            .await?;
        for h in handed {
            self.audit.write(&**txn, call, h.entry()).await?;
            txn.append(super::accounts::changed(&h.after, "")).await?;
        }
        Ok(true)
    }

    /// ListMembers (rule ORG-5): in join order, keyset-paginated, emails from identity.
    pub async fn list_members(&self, call: &Call, cmd: ListMembers) -> Result<Page<MemberView>> {
        require_caller(&call.principal)?;
        required("organization_id", &cmd.organization_id)?;
        let size = orgplane_platform::pagination::page_size(cmd.page_size)?;
        let role =
            OrgRole::try_from(cmd.role).map_err(|_| Error::invalid("role", "unknown role"))?;
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &cmd.organization_id,
            Deleted::Hidden,
        )
        .await?;
        access.require(OrgAction::Read)?;
        let scope = format!("ListMembers|{}|{}", access.org.id, cmd.role);
        let cursor: Option<(i64, String)> =
            self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
        let mut query =
            member::Entity::find().filter(member::Column::OrganizationId.eq(access.org.id.clone()));
        if role != OrgRole::Unspecified {
            query = query.filter(member::Column::Role.eq(role as i32));
        }
        if let Some((t, u)) = cursor {
            query = query.filter(keyset(
                member::Column::CreateTimeMs,
                t,
                member::Column::UserId,
                u,
                false,
            ));
        }
        let rows = query
            .order_by_asc(member::Column::CreateTimeMs)
            .order_by_asc(member::Column::UserId)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next_page_token) = self.runtime.page_tokens.page(&scope, rows, size, |m| {
            (m.create_time_ms, m.user_id.clone())
        });
        Ok(Page {
            items: self.enrich(rows, call).await?,
            next_page_token,
        })
    }

    /// GetMember (`me` is the calling user).
    pub async fn get_member(
        &self,
        call: &Call,
        organization_id: &str,
        user_id: &str,
    ) -> Result<MemberView> {
        require_caller(&call.principal)?;
        required("organization_id", organization_id)?;
        required("user_id", user_id)?;
        let user_id = resolve_me(&call.principal, user_id)?;
        let (access, m) = self.with_member(call, organization_id, &user_id).await?;
        access.require(OrgAction::Read)?;
        let m = found(m, &user_id)?;
        if let Some(profile) = &m.profile {
            return Ok(MemberView::named(m.member, profile));
        }
        let mut views = self.enrich(vec![m.member.clone()], call).await?;
        Ok(views.pop().unwrap_or_else(|| MemberView::stored(m.member)))
    }

    /// UpdateMemberRole (rules ORG-4, ORG-5).
    pub async fn update_member_role(
        &self,
        call: &Call,
        cmd: UpdateMemberRole,
    ) -> Result<Revised<MemberView>> {
        require_caller(&call.principal)?;
        required("organization_id", &cmd.organization_id)?;
        required("user_id", &cmd.user_id)?;
        let new_role = validate::assignable_role("role", cmd.role)?;
        let user_id = resolve_me(&call.principal, &cmd.user_id)?;
        let (access, before) = self
            .with_member(call, &cmd.organization_id, &user_id)
            .await?;
        access.require(OrgAction::ManageOrganization)?;
        let Membership {
            member: before,
            profile,
        } = found(before, &user_id)?;
        let old_role = role_of(before.role);
        if old_role == OrgRole::Owner {
            return Err(Error::OwnerRoleImmutable { user_id });
        }
        access
            .standing
            .require_person_for_admin(Some(old_role), Some(new_role))?;
        check_etag(&cmd.etag, before.version, "member")?;
        if old_role == new_role {
            return Ok(Revised {
                value: self.enrich_one(before, call).await,
                revision: self.head_revision().await?,
            });
        }
        // Grouped: the change holds inside the unit (the version condition of its UPDATE), so
        // concurrent role changes share one commit.
        let write = async {
            let mut txn = WriteUnit::begin_grouped(&self.outbox, call).await?;
            let after = self.set_member_role_in(&mut txn, &before, new_role).await?;
            self.audit.write_in(
                &mut txn,
                call,
                Entry::new(
                    &before.organization_id,
                    "member.update_role",
                    "member",
                    &user_id,
                )
                .change(Some(&before), Some(&after)),
            );
            Ok((after, txn.commit_at_revision().await?))
        };
        let (value, revision) = match profile {
            Some(profile) => {
                let (after, revision) = write.await?;
                (MemberView::named(after, &profile), revision)
            }
            None => self.enriched_during(&user_id, call, write).await?,
        };
        Ok(Revised { value, revision })
    }

    /// RemoveMember (rules ORG-4, ORG-5): by OWNER/ADMIN, or a member leaving. Returns the
    /// revision of `MemberRemoved`.
    pub async fn remove_member(
        &self,
        call: &Call,
        organization_id: &str,
        user_id: &str,
    ) -> Result<i64> {
        require_caller(&call.principal)?;
        required("organization_id", organization_id)?;
        required("user_id", user_id)?;
        let user_id = resolve_me(&call.principal, user_id)?;
        let (access, before) = self.with_member(call, organization_id, &user_id).await?;
        let leaving = access.user_id() == Some(user_id.as_str());
        if !leaving {
            access.require(OrgAction::ManageOrganization)?;
        }
        let before = found(before, &user_id)?.member;
        let role = role_of(before.role);
        if role == OrgRole::Owner {
            return Err(Error::OwnershipTransferRequired { user_id });
        }
        access.standing.require_person_for_admin(Some(role), None)?;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        if !self.delete_member_in(&mut txn, call, &before).await? {
            return Err(Error::not_found("member", &user_id));
        }
        let action = if leaving {
            "member.leave"
        } else {
            "member.remove"
        };
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&before.organization_id, action, "member", &user_id)
                    .change(Some(&before), None),
            )
            .await?;
        Ok(txn.commit_at_revision().await?)
    }

    /// TransferOwnership (rules ORG-4, ID-6).
    pub async fn transfer_ownership(
        &self,
        call: &Call,
        organization_id: &str,
        new_owner_user_id: &str,
    ) -> Result<Transferred> {
        require_caller(&call.principal)?;
        required("organization_id", organization_id)?;
        required("new_owner_user_id", new_owner_user_id)?;
        let access =
            Access::resolve(&self.db, &call.principal, organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::OwnerOnly)?;
        self.step_up(call, &access)?;
        let owner_id = access.user_id().unwrap_or_default().to_owned();
        if new_owner_user_id == owner_id {
            return Err(Error::invalid(
                "new_owner_user_id",
                "you already own the organization",
            ));
        }
        let org_before = access.org;
        let target = self.find_member(&org_before.id, new_owner_user_id).await?;
        let owner = self.find_member(&org_before.id, &owner_id).await?;
        let now = self.now_ms();
        let set_role = |m: &member::Model, role: OrgRole| {
            let mut m = m.clone();
            m.role = role as i32;
            m.update_time_ms = now;
            m.version += 1;
            m
        };
        let new_owner = set_role(&target, OrgRole::Owner);
        let previous_owner = set_role(&owner, OrgRole::Admin);
        let mut org_after = org_before.clone();
        org_after.owner_user_id = new_owner.user_id.clone();
        org_after.update_time_ms = now;
        org_after.version += 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        for (before, after) in [(&target, &new_owner), (&owner, &previous_owner)] {
            let updated = member::Entity::update_many()
                .col_expr(member::Column::Role, Expr::value(after.role))
                .col_expr(member::Column::UpdateTimeMs, Expr::value(now))
                .col_expr(member::Column::Version, Expr::value(after.version))
                .filter(member::Column::OrganizationId.eq(before.organization_id.clone()))
                .filter(member::Column::UserId.eq(before.user_id.clone()))
                .filter(member::Column::Version.eq(before.version))
                .exec(&*txn)
                .await?;
            if updated.rows_affected == 0 {
                return Err(etag_mismatch("member").into());
            }
        }
        let updated = organization::Entity::update_many()
            .col_expr(
                organization::Column::OwnerUserId,
                Expr::value(org_after.owner_user_id.clone()),
            )
            .col_expr(organization::Column::UpdateTimeMs, Expr::value(now))
            .col_expr(
                organization::Column::Version,
                Expr::col(organization::Column::Version).add(1),
            )
            .filter(organization::Column::Id.eq(org_before.id.clone()))
            .filter(organization::Column::OwnerUserId.eq(owner_id.clone()))
            .exec(&*txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(etag_mismatch("organization").into());
        }
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &org_before.id,
                    "organization.transfer_ownership",
                    "organization",
                    &org_before.id,
                )
                .change(Some(&org_before), Some(&org_after)),
            )
            .await?;
        txn.append(event::Payload::OwnershipTransferred(OwnershipTransferred {
            organization_id: org_before.id.clone(),
            previous_owner_user_id: owner_id.clone(),
            new_owner_user_id: new_owner.user_id.clone(),
            new_owner_previous_role: target.role,
        }))
        .await?;
        let revision = txn.commit_at_revision().await?;
        let organization = organization::Entity::find_by_id(org_before.id.clone())
            .one(&self.db)
            .await?
            .unwrap_or(org_after);
        let mut views = self
            .enrich_best_effort(vec![new_owner, previous_owner], call)
            .await
            .into_iter();
        let (Some(new_owner), Some(previous_owner)) = (views.next(), views.next()) else {
            return Err(Error::Api(orgplane_platform::ApiError::internal(
                "two memberships in, fewer out",
            )));
        };
        Ok(Transferred {
            organization,
            new_owner,
            previous_owner,
            revision,
        })
    }
}

/// The membership read, or NOT_FOUND of member `user_id`.
fn found<M>(m: Option<M>, user_id: &str) -> Result<M> {
    m.ok_or_else(|| Error::not_found("member", user_id))
}
