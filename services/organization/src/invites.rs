//! Invites (rule ORG-6): create (and mail), get, list, withdraw, accept.

use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Principal;
use orgplane_platform::call::Call;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::mail::Mail;
use orgplane_platform::roles::OrgAction;
use orgplane_platform::{ApiError, ApiResult};
use orgplane_proto::events::v1::{MemberAdded, event};
use orgplane_proto::organization::v1::{self as api, InviteState, OrgRole, OrganizationState};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::authz::{Access, Deleted};
use crate::convert::{self, required};
use crate::core::Core;
use crate::members::admin_role_needs_a_person;
use crate::store::{invite, member, organization};

/// How long an invite can be accepted (ORG-6).
pub const INVITE_TTL_MS: i64 = 21 * 24 * 3600 * 1000;

fn not_pending(id: &str) -> ApiError {
    ApiError::failed_precondition(
        "INVITE_NOT_PENDING",
        id,
        "the invite was already accepted or withdrawn",
    )
}

impl Core {
    async fn find_invite(&self, invite_id: &str) -> ApiResult<invite::Model> {
        invite::Entity::find_by_id(invite_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("invite", invite_id))
    }

    /// The caller's access to the invite's organization as its OWNER/ADMIN, or NOT_FOUND for the
    /// invite (never for the organization, whose id the caller may not know).
    async fn invite_admin(&self, principal: &Principal, inv: &invite::Model) -> ApiResult<Access> {
        Access::resolve(&self.db, principal, &inv.organization_id, Deleted::Hidden)
            .await
            .map_err(|e| {
                if e.code() == tonic::Code::NotFound {
                    ApiError::not_found("invite", &inv.id)
                } else {
                    e
                }
            })
    }

    /// CreateInvite (rule ORG-6).
    pub async fn create_invite(
        &self,
        call: &Call,
        req: api::CreateInviteRequest,
    ) -> ApiResult<api::CreateInviteResponse> {
        let principal = call.principal.as_ref();
        let (_, actor) = principal.actor();
        let key = convert::request_id(&req.request_id)
            .ok()
            .flatten()
            .map(|r| format!("CreateInvite|{actor}|{}|{r}", req.organization_id));
        let first = self.create_invite_once(call, req.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || self.create_invite_once(call, req))
            .await
    }

    async fn create_invite_once(
        &self,
        call: &Call,
        req: api::CreateInviteRequest,
    ) -> ApiResult<api::CreateInviteResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        let input = req
            .invite
            .ok_or_else(|| ApiError::invalid_argument("invite", "required"))?;
        let email = convert::email("invite.email", &input.email)?;
        let role = convert::assignable_role("invite.role", input.role)?;
        let request_id = convert::request_id(&req.request_id)?;
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        if role == OrgRole::Admin && access.is_api_key() {
            return Err(admin_role_needs_a_person());
        }
        let org = access.org;
        let (_, actor) = principal.actor();
        let key = request_id.map(|r| format!("CreateInvite|{actor}|{}|{r}", org.id));
        let now = self.now_ms();
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            let inv = self.find_invite(&id).await?;
            return Ok(api::CreateInviteResponse {
                invite: Some(convert::invite(&inv, &org.name, now)),
            });
        }
        let is_member = member::Entity::find()
            .filter(member::Column::OrganizationId.eq(org.id.clone()))
            .filter(member::Column::Email.eq(email.clone()))
            .one(&self.db)
            .await?
            .is_some();
        if is_member {
            return Err(ApiError::already_exists(
                "ALREADY_A_MEMBER",
                "a member of the organization has this email",
            ));
        }
        let pending_taken = || {
            ApiError::already_exists(
                "INVITE_ALREADY_PENDING",
                "a pending invite for this email exists",
            )
        };
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        if let Some(existing) = invite::Entity::find()
            .filter(invite::Column::OrganizationId.eq(org.id.clone()))
            .filter(invite::Column::PendingKey.eq(email.clone()))
            .one(&*txn)
            .await?
        {
            if existing.expire_time_ms > now {
                return Err(pending_taken());
            }
            // An expired invite no longer blocks a new one.
            invite::Entity::update_many()
                .col_expr(invite::Column::PendingKey, Expr::value(None::<String>))
                .filter(invite::Column::Id.eq(existing.id.clone()))
                .exec(&*txn)
                .await?;
        }
        // Who sent it, truthfully: a person, or the admin API key (never as a user id).
        let (inviter_user_id, inviter_api_key_id) = match principal {
            Principal::ApiKey(k) => (String::new(), k.key_id.clone()),
            p => (p.actor().1, String::new()),
        };
        let inv = invite::Model {
            id: convert::new_id("inv"),
            organization_id: org.id.clone(),
            email: email.clone(),
            pending_key: Some(email.clone()),
            role: role as i32,
            state: InviteState::Pending as i32,
            inviter_user_id,
            inviter_api_key_id,
            create_time_ms: now,
            expire_time_ms: now + INVITE_TTL_MS,
            accept_time_ms: None,
            accepted_user_id: String::new(),
            delete_time_ms: None,
        };
        invite::Entity::insert(invite::ActiveModel::from(inv.clone()))
            .exec(&*txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    pending_taken()
                } else {
                    e.into()
                }
            })?;
        self.remember(&txn, key.as_deref(), &org.id, &inv.id)
            .await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org.id, "invite.create", "invite", &inv.id)
                    .change(None, Some(&convert::invite(&inv, &org.name, now))),
            )
            .await?;
        // Mail before commit: a failed send rolls the invite back (retry with the request_id).
        let link = format!("{}{}", self.config.invite_link_base, inv.id);
        self.mailer
            .send(
                &self.config.mail_from,
                Mail {
                    to: email.clone(),
                    subject: format!("You are invited to join {} on Orgplane", org.name),
                    body: format!(
                        "You have been invited to join the organization \"{}\" as {}.\n\n\
                         Accept the invitation: {link}\n\
                         (invite id {}; sign in with this email address, then call \
                         OrganizationService/AcceptInvite).\n\n\
                         The invitation expires in 21 days.\n",
                        org.name,
                        role.as_str_name().trim_start_matches("ORG_ROLE_"),
                        inv.id
                    ),
                },
            )
            .await?;
        txn.commit().await?;
        Ok(api::CreateInviteResponse {
            invite: Some(convert::invite(&inv, &org.name, now)),
        })
    }

    /// GetInvite: for the organization's OWNER/ADMIN, or the invitee.
    pub async fn get_invite(
        &self,
        call: &Call,
        req: api::GetInviteRequest,
    ) -> ApiResult<api::GetInviteResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("invite_id", &req.invite_id)?;
        let inv = self.find_invite(&req.invite_id).await?;
        let not_found = || ApiError::not_found("invite", &inv.id);
        let now = self.now_ms();
        if let Ok(access) =
            Access::resolve(&self.db, principal, &inv.organization_id, Deleted::Hidden).await
            && access.allows(OrgAction::ManageOrganization)
        {
            return Ok(api::GetInviteResponse {
                invite: Some(convert::invite(&inv, &access.org.name, now)),
            });
        }
        let Principal::User(user) = principal else {
            return Err(not_found());
        };
        let account = self.users.get(&user.user_id, call).await?;
        let invitee =
            account.is_some_and(|a| a.email_verified && a.email.trim().to_lowercase() == inv.email);
        if !invitee {
            return Err(not_found());
        }
        let org = organization::Entity::find_by_id(inv.organization_id.clone())
            .one(&self.db)
            .await?
            .filter(|o| o.state == OrganizationState::Active as i32)
            .ok_or_else(not_found)?;
        Ok(api::GetInviteResponse {
            invite: Some(convert::invite(&inv, &org.name, now)),
        })
    }

    /// ListInvites, newest first.
    pub async fn list_invites(
        &self,
        call: &Call,
        req: api::ListInvitesRequest,
    ) -> ApiResult<api::ListInvitesResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("organization_id", &req.organization_id)?;
        let size = orgplane_platform::pagination::page_size(req.page_size)?;
        let state = InviteState::try_from(req.state)
            .map_err(|_| ApiError::invalid_argument("state", "unknown state"))?;
        let access =
            Access::resolve(&self.db, principal, &req.organization_id, Deleted::Hidden).await?;
        access.require(OrgAction::ManageOrganization)?;
        let org = access.org;
        let scope = format!("ListInvites|{}|{}|{}", org.id, req.state, req.show_deleted);
        let cursor: Option<String> = self.runtime.page_tokens.decode(&scope, &req.page_token)?;
        let now = self.now_ms();
        let pending = invite::Column::State.eq(InviteState::Pending as i32);
        let condition = match state {
            InviteState::Pending => Condition::all()
                .add(pending)
                .add(invite::Column::ExpireTimeMs.gt(now)),
            InviteState::Expired => Condition::all()
                .add(pending)
                .add(invite::Column::ExpireTimeMs.lte(now)),
            InviteState::Accepted | InviteState::Deleted => {
                Condition::all().add(invite::Column::State.eq(state as i32))
            }
            InviteState::Unspecified if req.show_deleted => Condition::all(),
            InviteState::Unspecified => {
                Condition::all().add(invite::Column::State.ne(InviteState::Deleted as i32))
            }
        };
        let mut query = invite::Entity::find()
            .filter(invite::Column::OrganizationId.eq(org.id.clone()))
            .filter(condition);
        if let Some(after) = cursor {
            query = query.filter(invite::Column::Id.lt(after));
        }
        let rows = query
            .order_by_desc(invite::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next) = self
            .runtime
            .page_tokens
            .page(&scope, rows, size, |i| i.id.clone());
        Ok(api::ListInvitesResponse {
            invites: rows
                .iter()
                .map(|i| convert::invite(i, &org.name, now))
                .collect(),
            next_page_token: next,
        })
    }

    /// DeleteInvite: withdraws a pending invite.
    pub async fn delete_invite(
        &self,
        call: &Call,
        req: api::DeleteInviteRequest,
    ) -> ApiResult<api::DeleteInviteResponse> {
        let principal = call.principal.as_ref();
        crate::authz::require_caller(principal)?;
        required("invite_id", &req.invite_id)?;
        let inv = self.find_invite(&req.invite_id).await?;
        let access = self.invite_admin(principal, &inv).await?;
        access.require(OrgAction::ManageOrganization)?;
        let now = self.now_ms();
        if convert::invite_state(&inv, now) != InviteState::Pending {
            return Err(not_pending(&inv.id));
        }
        let mut after = inv.clone();
        after.state = InviteState::Deleted as i32;
        after.pending_key = None;
        after.delete_time_ms = Some(now);
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        let updated = invite::Entity::update_many()
            .col_expr(invite::Column::State, Expr::value(after.state))
            .col_expr(invite::Column::PendingKey, Expr::value(None::<String>))
            .col_expr(
                invite::Column::DeleteTimeMs,
                Expr::value(after.delete_time_ms),
            )
            .filter(invite::Column::Id.eq(inv.id.clone()))
            .filter(invite::Column::State.eq(InviteState::Pending as i32))
            .exec(&*txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(not_pending(&inv.id));
        }
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&inv.organization_id, "invite.delete", "invite", &inv.id).change(
                    Some(&convert::invite(&inv, &access.org.name, now)),
                    Some(&convert::invite(&after, &access.org.name, now)),
                ),
            )
            .await?;
        txn.commit().await?;
        Ok(api::DeleteInviteResponse {
            invite: Some(convert::invite(&after, &access.org.name, now)),
        })
    }

    /// AcceptInvite (rule ORG-6).
    pub async fn accept_invite(
        &self,
        call: &Call,
        req: api::AcceptInviteRequest,
    ) -> ApiResult<api::AcceptInviteResponse> {
        let principal = call.principal.as_ref();
        let user = principal.require_user()?;
        required("invite_id", &req.invite_id)?;
        let inv = self.find_invite(&req.invite_id).await?;
        let org = organization::Entity::find_by_id(inv.organization_id.clone())
            .one(&self.db)
            .await?
            .filter(|o| o.state == OrganizationState::Active as i32)
            .ok_or_else(|| ApiError::not_found("invite", &inv.id))?;
        let account = self.users.get(&user.user_id, call).await?.ok_or_else(|| {
            ApiError::failed_precondition(
                "USER_NOT_FOUND",
                &user.user_id,
                "the identity service does not know the calling user",
            )
        })?;
        if !account.email_verified {
            return Err(ApiError::failed_precondition(
                "EMAIL_NOT_VERIFIED",
                &user.user_id,
                "verify your email address before accepting an invite",
            ));
        }
        let email = account.email.trim().to_lowercase();
        if email != inv.email {
            return Err(ApiError::failed_precondition(
                "INVITE_EMAIL_MISMATCH",
                &inv.id,
                "the invite was sent to another email address",
            ));
        }
        let now = self.now_ms();
        match convert::invite_state(&inv, now) {
            InviteState::Pending => {}
            InviteState::Expired => {
                return Err(ApiError::failed_precondition(
                    "INVITE_EXPIRED",
                    &inv.id,
                    "the invite expired; ask for a new one",
                ));
            }
            _ => return Err(not_pending(&inv.id)),
        }
        let already = || ApiError::already_exists("ALREADY_A_MEMBER", "you are already a member");
        if member::Entity::find_by_id((org.id.clone(), user.user_id.clone()))
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(already());
        }
        let joined = member::Model {
            organization_id: org.id.clone(),
            user_id: user.user_id.clone(),
            email,
            role: inv.role,
            create_time_ms: now,
            update_time_ms: now,
            version: 1,
        };
        let mut accepted = inv.clone();
        accepted.state = InviteState::Accepted as i32;
        accepted.pending_key = None;
        accepted.accept_time_ms = Some(now);
        accepted.accepted_user_id = user.user_id.clone();
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        let updated = invite::Entity::update_many()
            .col_expr(invite::Column::State, Expr::value(accepted.state))
            .col_expr(invite::Column::PendingKey, Expr::value(None::<String>))
            .col_expr(
                invite::Column::AcceptTimeMs,
                Expr::value(accepted.accept_time_ms),
            )
            .col_expr(
                invite::Column::AcceptedUserId,
                Expr::value(accepted.accepted_user_id.clone()),
            )
            .filter(invite::Column::Id.eq(inv.id.clone()))
            .filter(invite::Column::State.eq(InviteState::Pending as i32))
            .exec(&*txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(not_pending(&inv.id));
        }
        member::Entity::insert(member::ActiveModel::from(joined.clone()))
            .exec(&*txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    already()
                } else {
                    e.into()
                }
            })?;
        // One mutation, one record (ORG-10): the accepted invite names who joined
        // (`accepted_user_id`) and with which role, so the join needs no record of its own.
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org.id, "invite.accept", "invite", &inv.id).change(
                    Some(&convert::invite(&inv, &org.name, now)),
                    Some(&convert::invite(&accepted, &org.name, now)),
                ),
            )
            .await?;
        let revision = txn
            .append(event::Payload::MemberAdded(MemberAdded {
                organization_id: org.id.clone(),
                user_id: user.user_id.clone(),
                role: inv.role,
            }))
            .await?;
        txn.commit().await?;
        let mut member = [convert::member(&joined)];
        self.enrich_best_effort(&mut member, call).await;
        let [member] = member;
        Ok(api::AcceptInviteResponse {
            member: Some(member),
            invite: Some(convert::invite(&accepted, &org.name, now)),
            revision,
        })
    }
}
