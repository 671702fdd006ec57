//! Writing a new invite (rule ORG-6): the one step CreateInvite and CreateChildOrganization
//! (the first owner's invite, rule ORG-13) share, and who may invite an OWNER.

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::auth::Principal;
use orgplane_platform::email::Email;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::mail::{Mail, with_sender_name};
use orgplane_proto::organization::v1::{InviteState, OrgRole};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::access::Access;
use super::invites::image;
use super::{App, InviteView};
use crate::domain::{Error, INVITE_TTL_MS, Result};
use crate::store::query::new_id;
use crate::store::{invite, member, organization};

/// An invite to write with [`App::issue_invite`].
#[derive(Debug)]
pub(crate) struct NewInvite<'a> {
    /// The organization invited to.
    pub org: &'a organization::Model,
    /// The invitee's address.
    pub email: Email,
    /// The role they get.
    pub role: OrgRole,
    /// The AIP-155 idempotency key to remember, if any.
    pub key: Option<&'a str>,
    /// The operator acting in `org`, when one does (ORG-13).
    pub operator: Option<&'a str>,
}

impl App {
    /// ORG-13: only the operator acting in a child without an owner and without a PENDING OWNER
    /// invite may invite an OWNER; anyone else gets `OWNER_ROLE_NOT_ASSIGNABLE` as for any
    /// organization.
    pub(super) async fn require_first_owner_invite(&self, access: &Access) -> Result<()> {
        let refused = Error::OwnerNotAssignable {
            field: "invite.role",
        };
        if access.acting_operator().is_none() || !access.org.owner_user_id.is_empty() {
            return Err(refused);
        }
        let pending_owner = invite::Entity::find()
            .filter(invite::Column::OrganizationId.eq(access.org.id.clone()))
            .filter(invite::Column::Role.eq(OrgRole::Owner as i32))
            .filter(invite::Column::State.eq(InviteState::Pending as i32))
            .filter(invite::Column::ExpireTimeMs.gt(self.now_ms()))
            .one(&self.db)
            .await?;
        match pending_owner {
            Some(_) => Err(refused),
            None => Ok(()),
        }
    }

    /// Writes a PENDING invite in `txn` (rule ORG-6): refuses a member's address, the
    /// organization's BLOCKED domains and its invite restriction (ORG-14) and a second pending
    /// invite for the address; remembers the request id; audits it (as the operator when one
    /// acts, ORG-13); and mails the link before the caller commits, so that a failed send rolls
    /// the invite back. Shared by CreateInvite and CreateChildOrganization (the first owner).
    pub(crate) async fn issue_invite(
        &self,
        txn: &WriteUnit,
        call: &Call,
        new: NewInvite<'_>,
    ) -> Result<InviteView> {
        let NewInvite {
            org,
            email,
            role,
            key,
            operator,
        } = new;
        let now = self.now_ms();
        let is_member = member::Entity::find()
            .filter(member::Column::OrganizationId.eq(org.id.clone()))
            .filter(member::Column::Email.eq(email.key.clone()))
            .one(&**txn)
            .await?
            .is_some();
        if is_member {
            return Err(Error::AlreadyAMember {
                message: "a member of the organization has this email",
            });
        }
        // ORG-6 and ORG-14: the organization's BLOCKED domains, and its invite restriction.
        let restricted = self.restricts_invites(&**txn, &org.id).await?;
        self.check_joining_domain(&**txn, &org.id, &email, restricted)
            .await?;
        if let Some(existing) = invite::Entity::find()
            .filter(invite::Column::OrganizationId.eq(org.id.clone()))
            .filter(invite::Column::PendingKey.eq(email.key.clone()))
            .one(&**txn)
            .await?
        {
            if existing.expire_time_ms > now {
                return Err(Error::InviteAlreadyPending);
            }
            // An expired invite no longer blocks a new one.
            invite::Entity::update_many()
                .col_expr(invite::Column::PendingKey, Expr::value(None::<String>))
                .filter(invite::Column::Id.eq(existing.id.clone()))
                .exec(&**txn)
                .await?;
        }
        // Who sent it, truthfully: a person, or the admin API key (never as a user id).
        let (inviter_user_id, inviter_api_key_id) = match call.principal.as_ref() {
            Principal::ApiKey(k) => (String::new(), k.key_id.clone()),
            p => (p.actor().1, String::new()),
        };
        let inv = invite::Model {
            id: new_id("inv"),
            organization_id: org.id.clone(),
            email: email.address.clone(),
            pending_key: Some(email.key.clone()),
            role: role as i32,
            state: InviteState::Pending as i32,
            inviter_user_id,
            create_time_ms: now,
            expire_time_ms: now + INVITE_TTL_MS,
            accept_time_ms: None,
            accepted_user_id: String::new(),
            delete_time_ms: None,
            inviter_api_key_id,
        };
        invite::Entity::insert(invite::ActiveModel::from(inv.clone()))
            .exec(&**txn)
            .await
            .map_err(|e| {
                if orgplane_platform::db::is_unique_violation(&e) {
                    Error::InviteAlreadyPending
                } else {
                    e.into()
                }
            })?;
        self.remember(txn, key, &org.id, &inv.id).await?;
        self.audit
            .write(
                &**txn,
                call,
                Entry::new(&org.id, "invite.create", "invite", &inv.id)
                    .change(None, Some(&image(&inv, &org.name, now)))
                    .as_operator(operator),
            )
            .await?;
        // The mail names the organization and the role, not who sent it (a person or a key).
        let link = format!("{}{}", self.config.invite_link_base, inv.id);
        let branding = self.branding_of(&**txn, org).await?.model;
        self.mailer
            .send(
                &with_sender_name(&self.config.mail_from, &branding.mail_sender_name)?,
                Mail {
                    to: email.address.clone(),
                    subject: format!(
                        "You are invited to join {} on {}",
                        org.name, branding.display_name
                    ),
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
        Ok(image(&inv, &org.name, now))
    }
}
