//! Members and ownership (rules ORG-4, ORG-5): list, get, change role, remove, transfer.

use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Principal;
use orgplane_platform::call::Call;
use orgplane_platform::convert::etag_mismatch;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::events::v1::{MemberRemoved, MemberRoleChanged, OwnershipTransferred, event};
use orgplane_proto::organization::v1::{self as api, OrgRole};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::authz::{Access, Deleted};
use crate::convert::{self, required};
use crate::core::{Core, keyset};
use crate::store::{member, organization};
use orgplane_platform::convert::check_etag;

/// The image of a membership in audit records: its API message as stored (ORG-10).
pub fn member_json(m: &member::Model) -> api::Member {
    convert::member(m)
}

/// `user_id`, with `me` meaning the calling user.
pub(crate) fn resolve_me(principal: &Principal, user_id: &str) -> ApiResult<String> {
    if user_id == "me" {
        match principal {
            Principal::User(u) => Ok(u.user_id.clone()),
            _ => Err(ApiError::invalid_argument(
                "user_id",
                "`me` needs a user's access token",
            )),
        }
    } else {
        Ok(user_id.to_owned())
    }
}

/// PERMISSION_DENIED `USER_CREDENTIALS_REQUIRED` (ORG-5): with an API key, no one may be removed
/// from, demoted from or promoted to the ADMIN role, so that a leaked key can neither remove the
/// admins nor mint new ones.
pub(crate) fn admin_role_needs_a_person() -> ApiError {
    ApiError::permission_denied(
        "USER_CREDENTIALS_REQUIRED",
        "only a person signed in with their own account may give, take or remove the ADMIN role; an API key may not",
    )
}

impl Core {
    async fn find_member(&self, organization_id: &str, user_id: &str) -> ApiResult<member::Model> {
        member::Entity::find_by_id((organization_id.to_owned(), user_id.to_owned()))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("member", user_id))
    }

    /// ListMembers (rule ORG-5): in join order, keyset-paginated, emails from identity.
    pub async fn list_members(
        &self,
        call: &Call,
        req: api::ListMembersRequest,
    ) -> ApiResult<api::ListMembersResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        let size = orgplane_platform::pagination::page_size(req.page_size)?;
        let role = OrgRole::try_from(req.role)
            .map_err(|_| ApiError::invalid_argument("role", "unknown role"))?;
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::Read)?;
        let scope = format!("ListMembers|{}|{}", access.org.id, req.role);
        let cursor: Option<(i64, String)> =
            self.runtime.page_tokens.decode(&scope, &req.page_token)?;
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
        let (rows, next) = self.runtime.page_tokens.page(&scope, rows, size, |m| {
            (m.create_time_ms, m.user_id.clone())
        });
        let mut members: Vec<api::Member> = rows.iter().map(convert::member).collect();
        self.enrich(&mut members, call).await?;
        Ok(api::ListMembersResponse {
            members,
            next_page_token: next,
        })
    }

    /// GetMember.
    pub async fn get_member(
        &self,
        call: &Call,
        req: api::GetMemberRequest,
    ) -> ApiResult<api::GetMemberResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        required("user_id", &req.user_id)?;
        let user_id = resolve_me(principal, &req.user_id)?;
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::Read)?;
        let m = self.find_member(&access.org.id, &user_id).await?;
        let mut members = [convert::member(&m)];
        self.enrich(&mut members, call).await?;
        let [member] = members;
        Ok(api::GetMemberResponse {
            member: Some(member),
        })
    }

    /// UpdateMemberRole (rules ORG-4, ORG-5).
    pub async fn update_member_role(
        &self,
        call: &Call,
        req: api::UpdateMemberRoleRequest,
    ) -> ApiResult<api::UpdateMemberRoleResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        required("user_id", &req.user_id)?;
        let new_role = convert::assignable_role("role", req.role)?;
        let user_id = resolve_me(principal, &req.user_id)?;
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        let before = self.find_member(&access.org.id, &user_id).await?;
        let old_role = convert::role_of(before.role);
        if old_role == OrgRole::Owner {
            return Err(ApiError::failed_precondition(
                "OWNER_ROLE_IMMUTABLE",
                &user_id,
                "the OWNER's role cannot be changed; use TransferOwnership",
            ));
        }
        if access.is_api_key() && (old_role == OrgRole::Admin || new_role == OrgRole::Admin) {
            return Err(admin_role_needs_a_person());
        }
        check_etag(&req.etag, before.version, "member")?;
        if old_role == new_role {
            let mut member = [convert::member(&before)];
            self.enrich_best_effort(&mut member, call).await;
            let [member] = member;
            return Ok(api::UpdateMemberRoleResponse {
                member: Some(member),
                revision: self.head_revision().await?,
            });
        }
        let mut after = before.clone();
        after.role = new_role as i32;
        after.update_time_ms = self.now_ms();
        after.version += 1;
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        let updated = member::Entity::update_many()
            .col_expr(member::Column::Role, Expr::value(after.role))
            .col_expr(
                member::Column::UpdateTimeMs,
                Expr::value(after.update_time_ms),
            )
            .col_expr(member::Column::Version, Expr::value(after.version))
            .filter(member::Column::OrganizationId.eq(before.organization_id.clone()))
            .filter(member::Column::UserId.eq(before.user_id.clone()))
            .filter(member::Column::Version.eq(before.version))
            .exec(&*txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(etag_mismatch("member"));
        }
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &before.organization_id,
                    "member.update_role",
                    "member",
                    &user_id,
                )
                .change(Some(&member_json(&before)), Some(&member_json(&after))),
            )
            .await?;
        let revision = txn
            .append(event::Payload::MemberRoleChanged(MemberRoleChanged {
                organization_id: before.organization_id.clone(),
                user_id: user_id.clone(),
                old_role: old_role as i32,
                new_role: new_role as i32,
            }))
            .await?;
        txn.commit().await?;
        let mut member = [convert::member(&after)];
        self.enrich_best_effort(&mut member, call).await;
        let [member] = member;
        Ok(api::UpdateMemberRoleResponse {
            member: Some(member),
            revision,
        })
    }

    /// RemoveMember (rules ORG-4, ORG-5): by OWNER/ADMIN, or a member leaving.
    pub async fn remove_member(
        &self,
        call: &Call,
        req: api::RemoveMemberRequest,
    ) -> ApiResult<api::RemoveMemberResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        required("user_id", &req.user_id)?;
        let user_id = resolve_me(principal, &req.user_id)?;
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        let leaving = access.user_id() == Some(user_id.as_str());
        if !leaving {
            access.require(OrgAction::ManageOrganization)?;
        }
        let before = self.find_member(&access.org.id, &user_id).await?;
        let role = convert::role_of(before.role);
        if role == OrgRole::Owner {
            return Err(ApiError::failed_precondition(
                "OWNERSHIP_TRANSFER_REQUIRED",
                &user_id,
                "the OWNER cannot be removed; transfer ownership first",
            ));
        }
        if role == OrgRole::Admin && access.is_api_key() {
            return Err(admin_role_needs_a_person());
        }
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        let deleted = member::Entity::delete_many()
            .filter(member::Column::OrganizationId.eq(before.organization_id.clone()))
            .filter(member::Column::UserId.eq(user_id.clone()))
            .exec(&*txn)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(ApiError::not_found("member", &user_id));
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
                    .change(Some(&member_json(&before)), None),
            )
            .await?;
        let revision = txn
            .append(event::Payload::MemberRemoved(MemberRemoved {
                organization_id: before.organization_id.clone(),
                user_id: user_id.clone(),
                old_role: before.role,
            }))
            .await?;
        txn.commit().await?;
        Ok(api::RemoveMemberResponse { revision })
    }

    /// TransferOwnership (rules ORG-4, ID-6).
    pub async fn transfer_ownership(
        &self,
        call: &Call,
        req: api::TransferOwnershipRequest,
    ) -> ApiResult<api::TransferOwnershipResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        required("new_owner_user_id", &req.new_owner_user_id)?;
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::OwnerOnly)?;
        self.step_up(principal)?;
        let owner_id = access.user_id().unwrap_or_default().to_owned();
        if req.new_owner_user_id == owner_id {
            return Err(ApiError::invalid_argument(
                "new_owner_user_id",
                "you already own the organization",
            ));
        }
        let org_before = access.org;
        let target = self
            .find_member(&org_before.id, &req.new_owner_user_id)
            .await?;
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
                return Err(etag_mismatch("member"));
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
            return Err(etag_mismatch("organization"));
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
                .change(
                    Some(&crate::core::org_json(&org_before)),
                    Some(&crate::core::org_json(&org_after)),
                ),
            )
            .await?;
        let revision = txn
            .append(event::Payload::OwnershipTransferred(OwnershipTransferred {
                organization_id: org_before.id.clone(),
                previous_owner_user_id: owner_id.clone(),
                new_owner_user_id: new_owner.user_id.clone(),
                new_owner_previous_role: target.role,
            }))
            .await?;
        txn.commit().await?;
        let org_after = organization::Entity::find_by_id(org_before.id.clone())
            .one(&self.db)
            .await?
            .unwrap_or(org_after);
        let mut members = [
            convert::member(&new_owner),
            convert::member(&previous_owner),
        ];
        self.enrich_best_effort(&mut members, call).await;
        let [new_owner, previous_owner] = members;
        Ok(api::TransferOwnershipResponse {
            organization: Some(convert::organization(&org_after)),
            new_owner: Some(new_owner),
            previous_owner: Some(previous_owner),
            revision,
        })
    }
}
