//! Invites (rule ORG-6): create, get, list, withdraw, accept; the writing and mailing of a new
//! invite is [`super::issue`]'s.

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Principal;
use orgplane_platform::email::canonical_email;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{MemberAdded, event};
use orgplane_proto::organization::v1::{InviteState, OrgRole, OrganizationState};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::access::{Access, as_not_found_of};
use super::issue::NewInvite;
use super::{App, InviteView, MemberView, Page};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::{self, invite_state, required};
use crate::domain::{Error, Result};
use crate::store::{invite, member, organization};

/// CreateInvite (ORG-6).
#[derive(Debug, Clone, Default)]
pub struct CreateInvite {
    /// The organization.
    pub organization_id: String,
    /// The invitee's email and role (the request's `invite`, if any).
    pub invite: Option<InviteFields>,
    /// The AIP-155 request id, or empty.
    pub request_id: String,
}

/// What a request says of a new invite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InviteFields {
    /// The invitee's address.
    pub email: String,
    /// The `OrgRole` they get, as its number.
    pub role: i32,
}

/// ListInvites.
#[derive(Debug, Clone, Default)]
pub struct ListInvites {
    /// The organization.
    pub organization_id: String,
    /// `InviteState` filter as its number.
    pub state: i32,
    /// Whether withdrawn invites are listed too.
    pub show_deleted: bool,
    /// Requested page size.
    pub page_size: i32,
    /// Token of the page to read.
    pub page_token: String,
}

/// What AcceptInvite changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The new membership.
    pub member: MemberView,
    /// The accepted invite.
    pub invite: InviteView,
    /// The revision of `MemberAdded`.
    pub revision: i64,
}

fn not_pending(id: &str) -> Error {
    Error::InviteNotPending {
        invite_id: id.to_owned(),
    }
}

impl App {
    async fn find_invite(&self, invite_id: &str) -> Result<invite::Model> {
        invite::Entity::find_by_id(invite_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("invite", invite_id))
    }

    /// CreateInvite (rule ORG-6).
    pub async fn create_invite(&self, call: &Call, cmd: CreateInvite) -> Result<InviteView> {
        let (_, actor) = call.principal.actor();
        let key = validate::request_id(&cmd.request_id)
            .ok()
            .flatten()
            .map(|r| format!("CreateInvite|{actor}|{}|{r}", cmd.organization_id));
        let first = self.create_invite_once(call, cmd.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || self.create_invite_once(call, cmd))
            .await
    }

    async fn create_invite_once(&self, call: &Call, cmd: CreateInvite) -> Result<InviteView> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("organization_id", &cmd.organization_id)?;
        let input = cmd
            .invite
            .ok_or_else(|| Error::invalid("invite", "required"))?;
        let email = canonical_email("invite.email", &input.email)?;
        let owner = input.role == OrgRole::Owner as i32;
        let role = if owner {
            OrgRole::Owner
        } else {
            validate::assignable_role("invite.role", input.role)?
        };
        let request_id = validate::request_id(&cmd.request_id)?;
        let access =
            Access::resolve(&self.db, principal, &cmd.organization_id, Deleted::Hidden).await?;
        if owner {
            self.require_first_owner_invite(&access).await?;
        } else {
            access.require(OrgAction::ManageOrganization)?;
        }
        access.standing.require_person_for_admin(None, Some(role))?;
        let org = access.org.clone();
        let (_, actor) = principal.actor();
        let key = request_id.map(|r| format!("CreateInvite|{actor}|{}|{r}", org.id));
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            return Ok(InviteView {
                invite: self.find_invite(&id).await?,
                organization_name: org.name,
                now_ms: self.now_ms(),
            });
        }
        let txn = WriteUnit::begin(&self.outbox, call).await?;
        let created = self
            .issue_invite(
                &txn,
                call,
                NewInvite {
                    org: &org,
                    email,
                    role,
                    key: key.as_deref(),
                    operator: access.acting_operator(),
                },
            )
            .await?;
        txn.commit().await?;
        Ok(created)
    }

    /// GetInvite: for the organization's OWNER/ADMIN, or the invitee.
    pub async fn get_invite(&self, call: &Call, invite_id: &str) -> Result<InviteView> {
        let principal = call.principal.as_ref();
        require_caller(principal)?;
        required("invite_id", invite_id)?;
        let inv = self.find_invite(invite_id).await?;
        let not_found = || Error::not_found("invite", &inv.id);
        let now = self.now_ms();
        match Access::resolve(&self.db, principal, &inv.organization_id, Deleted::Hidden).await {
            Ok(access)
                if access
                    .require_or_operator(OrgAction::ManageOrganization)
                    .is_ok() =>
            {
                return Ok(InviteView {
                    organization_name: access.org.name,
                    invite: inv,
                    now_ms: now,
                });
            }
            // A member the security policy refuses learns why (ORG-16), not NOT_FOUND.
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        let Principal::User(user) = principal else {
            return Err(not_found());
        };
        let account = self.users.get(&user.user_id, call).await?;
        let invitee = account.is_some_and(|a| {
            a.email_verified && key_of(&a.email).is_some_and(|k| Some(k) == key_of(&inv.email))
        });
        if !invitee {
            return Err(not_found());
        }
        let org = organization::Entity::find_by_id(inv.organization_id.clone())
            .one(&self.db)
            .await?
            .filter(|o| o.state == OrganizationState::Active as i32)
            .ok_or_else(not_found)?;
        Ok(InviteView {
            invite: inv,
            organization_name: org.name,
            now_ms: now,
        })
    }

    /// ListInvites, newest first.
    pub async fn list_invites(&self, call: &Call, cmd: ListInvites) -> Result<Page<InviteView>> {
        require_caller(&call.principal)?;
        required("organization_id", &cmd.organization_id)?;
        let size = orgplane_platform::pagination::page_size(cmd.page_size)?;
        let state = InviteState::try_from(cmd.state)
            .map_err(|_| Error::invalid("state", "unknown state"))?;
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &cmd.organization_id,
            Deleted::Hidden,
        )
        .await?;
        access.require_or_operator(OrgAction::ManageOrganization)?;
        let org = access.org;
        let scope = format!("ListInvites|{}|{}|{}", org.id, cmd.state, cmd.show_deleted);
        let cursor: Option<String> = self.runtime.page_tokens.decode(&scope, &cmd.page_token)?;
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
            InviteState::Unspecified if cmd.show_deleted => Condition::all(),
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
        let (rows, next_page_token) = self
            .runtime
            .page_tokens
            .page(&scope, rows, size, |i| i.id.clone());
        Ok(Page {
            items: rows
                .into_iter()
                .map(|invite| InviteView {
                    invite,
                    organization_name: org.name.clone(),
                    now_ms: now,
                })
                .collect(),
            next_page_token,
        })
    }

    /// DeleteInvite: withdraws a pending invite.
    pub async fn delete_invite(&self, call: &Call, invite_id: &str) -> Result<InviteView> {
        require_caller(&call.principal)?;
        required("invite_id", invite_id)?;
        let inv = self.find_invite(invite_id).await?;
        // NOT_FOUND for the invite, never for the organization (whose id the caller may not know).
        let access = Access::resolve(
            &self.db,
            &call.principal,
            &inv.organization_id,
            Deleted::Hidden,
        )
        .await
        .map_err(as_not_found_of("invite", &inv.id))?;
        access.require_or_operator(OrgAction::ManageOrganization)?;
        let now = self.now_ms();
        if invite_state(inv.state, inv.expire_time_ms, now) != InviteState::Pending {
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
        let name = &access.org.name;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&inv.organization_id, "invite.delete", "invite", &inv.id)
                    .change(
                        Some(&image(&inv, name, now)),
                        Some(&image(&after, name, now)),
                    )
                    .as_operator(access.acting_operator()),
            )
            .await?;
        txn.commit().await?;
        Ok(InviteView {
            invite: after,
            organization_name: access.org.name,
            now_ms: now,
        })
    }

    /// AcceptInvite (rule ORG-6).
    pub async fn accept_invite(&self, call: &Call, invite_id: &str) -> Result<Accepted> {
        let user = call.principal.require_user()?;
        required("invite_id", invite_id)?;
        let inv = self.find_invite(invite_id).await?;
        let org = organization::Entity::find_by_id(inv.organization_id.clone())
            .one(&self.db)
            .await?
            .filter(|o| o.state == OrganizationState::Active as i32)
            .ok_or_else(|| Error::not_found("invite", &inv.id))?;
        let account =
            self.users
                .get(&user.user_id, call)
                .await?
                .ok_or_else(|| Error::UserNotFound {
                    user_id: user.user_id.clone(),
                })?;
        if !account.email_verified {
            return Err(Error::EmailNotVerified {
                user_id: user.user_id.clone(),
                before: "accepting an invite",
            });
        }
        let email = canonical_email("email", &account.email)?;
        if Some(&email.key) != key_of(&inv.email).as_ref() {
            return Err(Error::InviteEmailMismatch {
                invite_id: inv.id.clone(),
            });
        }
        let now = self.now_ms();
        match invite_state(inv.state, inv.expire_time_ms, now) {
            InviteState::Pending => {}
            InviteState::Expired => {
                return Err(Error::InviteExpired {
                    invite_id: inv.id.clone(),
                });
            }
            _ => return Err(not_pending(&inv.id)),
        }
        let owner = inv.role == OrgRole::Owner as i32;
        let has_owner = || Error::OrganizationHasOwner {
            invite_id: inv.id.clone(),
        };
        if owner && !org.owner_user_id.is_empty() {
            return Err(has_owner());
        }
        let already = || Error::AlreadyAMember {
            message: "you are already a member",
        };
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
            email: email.key.clone(),
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
        // Under the organization's row lock, so a merge or deletion cannot slip in between.
        if !crate::store::query::lock_active_organization(&*txn, &org.id).await? {
            return Err(Error::not_found("organization", &org.id));
        }
        // ORG-14: addresses of a domain the organization holds VERIFIED and BLOCKED stay out.
        self.check_joining_domain(&*txn, &org.id, &email, false)
            .await?;
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
        // ORG-13: the first owner of a child organization; only while it has none.
        if owner {
            let set = organization::Entity::update_many()
                .col_expr(
                    organization::Column::OwnerUserId,
                    Expr::value(user.user_id.clone()),
                )
                .col_expr(organization::Column::UpdateTimeMs, Expr::value(now))
                .col_expr(
                    organization::Column::Version,
                    Expr::col(organization::Column::Version).add(1),
                )
                .filter(organization::Column::Id.eq(org.id.clone()))
                .filter(organization::Column::OwnerUserId.eq(""))
                .exec(&*txn)
                .await?;
            if set.rows_affected == 0 {
                return Err(has_owner());
            }
        }
        // One mutation, one record (ORG-10): the accepted invite names who joined
        // (`accepted_user_id`) and with which role, so the join needs no record of its own.
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&org.id, "invite.accept", "invite", &inv.id).change(
                    Some(&image(&inv, &org.name, now)),
                    Some(&image(&accepted, &org.name, now)),
                ),
            )
            .await?;
        txn.append(event::Payload::MemberAdded(MemberAdded {
            organization_id: org.id.clone(),
            user_id: user.user_id.clone(),
            role: inv.role,
        }))
        .await?;
        let revision = txn.commit_at_revision().await?;
        Ok(Accepted {
            member: self.enrich_one(joined, call).await,
            invite: InviteView {
                invite: accepted,
                organization_name: org.name,
                now_ms: now,
            },
            revision,
        })
    }
}

/// The comparison key of an address (rule ID-15); `None` when it has no canonical form.
fn key_of(address: &str) -> Option<String> {
    canonical_email("email", address).ok().map(|e| e.key)
}

/// The audit image of `invite` as its organization's members read it at `now_ms`.
pub(super) fn image(invite: &invite::Model, organization_name: &str, now_ms: i64) -> InviteView {
    InviteView {
        invite: invite.clone(),
        organization_name: organization_name.to_owned(),
        now_ms,
    }
}
