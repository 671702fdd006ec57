//! Child organizations of operators (rule ORG-13): CreateChildOrganization (the child and the
//! invite of its first owner, in one transaction) and ListChildOrganizations. What an operator
//! may do inside a child is decided where each use case resolves the caller's
//! [`Access`](super::access::Access).

use orgplane_platform::Call;
use orgplane_platform::audit::Entry;
use orgplane_platform::email::canonical_email;
use orgplane_platform::events::WriteUnit;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::events::v1::{OrganizationCreated, SecurityPolicyChanged, event};
use orgplane_proto::organization::v1::{OrgRole, OrganizationKind, OrganizationState};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::access::Access;
use super::issue::NewInvite;
use super::organizations::{ListOrganizations, Listing, OrganizationFields, name_taken};
use super::security;
use super::settings::{layers, lock_family};
use super::{App, InviteView, Page};
use crate::domain::authz::{Deleted, require_caller};
use crate::domain::validate::{self, required};
use crate::domain::{Error, Result};
use crate::store::query::new_id;
use crate::store::{invite, organization, security_policy};

/// CreateChildOrganization (ORG-13).
#[derive(Debug, Clone, Default)]
pub struct CreateChildOrganization {
    /// The OPERATOR organization.
    pub operator_organization_id: String,
    /// The child's name, type and primary email (`kind` must be unspecified or STANDARD).
    pub organization: OrganizationFields,
    /// The address of the child's first owner.
    pub owner_email: String,
    /// The AIP-155 request id, or empty.
    pub request_id: String,
}

/// ListChildOrganizations (ORG-13): ListOrganizations' filters over one operator's children.
#[derive(Debug, Clone, Default)]
pub struct ListChildOrganizations {
    /// The OPERATOR organization.
    pub operator_organization_id: String,
    /// Filters, order and page, as ListOrganizations takes them.
    pub filters: ListOrganizations,
}

/// What CreateChildOrganization produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCreated {
    /// The child, ACTIVE and without an owner.
    pub organization: organization::Model,
    /// The invite of its first owner (role OWNER).
    pub owner_invite: InviteView,
    /// The revision of its last event (`OrganizationCreated`, then its policy in force).
    pub revision: i64,
}

/// The idempotency key of CreateChildOrganization: per caller, operator and request id.
fn create_child_key(actor: &str, operator_id: &str, request_id: &str) -> String {
    format!("CreateChildOrganization|{actor}|{operator_id}|{request_id}")
}

impl App {
    /// CreateChildOrganization (rule ORG-13).
    pub async fn create_child_organization(
        &self,
        call: &Call,
        cmd: CreateChildOrganization,
    ) -> Result<ChildCreated> {
        let (_, actor) = call.principal.actor();
        let key = validate::request_id(&cmd.request_id)
            .ok()
            .flatten()
            .map(|r| create_child_key(&actor, &cmd.operator_organization_id, &r));
        let first = self.create_child_once(call, cmd.clone()).await;
        self.or_created_meanwhile(key.as_deref(), first, || self.create_child_once(call, cmd))
            .await
    }

    async fn create_child_once(
        &self,
        call: &Call,
        cmd: CreateChildOrganization,
    ) -> Result<ChildCreated> {
        require_caller(&call.principal)?;
        required("operator_organization_id", &cmd.operator_organization_id)?;
        let input = cmd.organization;
        let name = validate::name("organization.name", &input.name)?;
        let org_type = validate::org_type(input.org_type)?;
        if validate::org_kind(input.kind)? != OrganizationKind::Standard as i32 {
            return Err(Error::invalid(
                "organization.kind",
                "a child organization is STANDARD: it cannot be an operator itself",
            ));
        }
        let primary_email =
            validate::optional_email("organization.primary_email", &input.primary_email)?;
        required("owner_email", &cmd.owner_email)?;
        let owner_email = canonical_email("owner_email", &cmd.owner_email)?;
        let request_id = validate::request_id(&cmd.request_id)?;
        let operator = self
            .operator_access(call, &cmd.operator_organization_id)
            .await?
            .org;
        let (_, actor) = call.principal.actor();
        let key = request_id.map(|r| create_child_key(&actor, &operator.id, &r));
        if let Some(id) = self.idempotent(key.as_deref()).await? {
            return self.created_child(&id).await;
        }
        let now = self.now_ms();
        // The operator is the creator: child names are unique per operator (ORG-1's index).
        let child = organization::Model {
            id: new_id("org"),
            name_key: name.to_lowercase(),
            name,
            org_type,
            primary_email,
            state: OrganizationState::Active as i32,
            owner_user_id: String::new(),
            creator_user_id: operator.id.clone(),
            create_time_ms: now,
            update_time_ms: now,
            delete_time_ms: None,
            purge_time_ms: None,
            version: 1,
            kind: OrganizationKind::Standard as i32,
            operator_id: operator.id.clone(),
            merged_into_id: String::new(),
        };
        let mut txn = WriteUnit::begin(&self.outbox, call).await?;
        lock_family(&*txn, &operator).await?;
        organization::Entity::insert(organization::ActiveModel::from(child.clone()))
            .exec(&*txn)
            .await
            .map_err(name_taken)?;
        self.remember(&txn, key.as_deref(), &child.id, &child.id)
            .await?;
        let acting = Some(operator.id.as_str());
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(&child.id, "organization.create", "organization", &child.id)
                    .change(None, Some(&child))
                    .as_operator(acting),
            )
            .await?;
        self.audit
            .write(
                &*txn,
                call,
                Entry::new(
                    &operator.id,
                    "child_organization.create",
                    "organization",
                    &child.id,
                )
                .change(None, Some(&child)),
            )
            .await?;
        txn.append(event::Payload::OrganizationCreated(OrganizationCreated {
            organization_id: child.id.clone(),
            name: child.name.clone(),
            owner_user_id: String::new(),
            primary_email: child.primary_email.clone(),
            operator_organization_id: operator.id.clone(),
        }))
        .await?;
        // The child's policy in force is its operator's: every service enforces it from the
        // child's first member on (a replica knows no operators).
        let in_force = self
            .security_policy_of(&layers::<security_policy::Model, _>(&*txn, &child).await?)
            .model;
        txn.append(event::Payload::SecurityPolicyChanged(
            SecurityPolicyChanged {
                organization_id: child.id.clone(),
                security_policy: Some(security::message(&in_force)),
            },
        ))
        .await?;
        let owner_invite = self
            .issue_invite(
                &txn,
                call,
                NewInvite {
                    org: &child,
                    email: owner_email,
                    role: OrgRole::Owner,
                    key: None,
                    operator: acting,
                },
            )
            .await?;
        let revision = txn.commit_at_revision().await?;
        Ok(ChildCreated {
            organization: child,
            owner_invite,
            revision,
        })
    }

    /// The answer to a retried CreateChildOrganization: the child the first call created and the
    /// OWNER invite issued with it (its oldest invite).
    async fn created_child(&self, child_id: &str) -> Result<ChildCreated> {
        let child = organization::Entity::find_by_id(child_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("organization", child_id))?;
        let invite = invite::Entity::find()
            .filter(invite::Column::OrganizationId.eq(child.id.clone()))
            .filter(invite::Column::Role.eq(OrgRole::Owner as i32))
            .order_by_asc(invite::Column::CreateTimeMs)
            .order_by_asc(invite::Column::Id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("invite", child_id))?;
        Ok(ChildCreated {
            owner_invite: InviteView {
                invite,
                organization_name: child.name.clone(),
                now_ms: self.now_ms(),
            },
            organization: child,
            revision: self.head_revision().await?,
        })
    }

    /// ListChildOrganizations (rule ORG-13): as ListOrganizations, over the operator's children.
    pub async fn list_child_organizations(
        &self,
        call: &Call,
        cmd: ListChildOrganizations,
    ) -> Result<Page<organization::Model>> {
        require_caller(&call.principal)?;
        required("operator_organization_id", &cmd.operator_organization_id)?;
        let listing = Listing::of(&cmd.filters)?;
        let operator = self
            .operator_access(call, &cmd.operator_organization_id)
            .await?
            .org;
        let mut children = organization::Entity::find()
            .filter(organization::Column::OperatorId.eq(operator.id.clone()));
        if !cmd.filters.show_deleted {
            children =
                children.filter(organization::Column::State.eq(OrganizationState::Active as i32));
        }
        let scope = format!("ListChildOrganizations|{}", operator.id);
        self.list_page(&scope, children, &cmd.filters, listing)
            .await
    }

    /// The caller's access to `operator_id` as an operator administrator (ORG-13): NOT_FOUND
    /// when it may not see it, FAILED_PRECONDITION `NOT_AN_OPERATOR` unless its kind is
    /// OPERATOR, PERMISSION_DENIED unless the caller is its OWNER, an ADMIN or its admin API
    /// key.
    async fn operator_access(&self, call: &Call, operator_id: &str) -> Result<Access> {
        let access =
            Access::resolve(&self.db, &call.principal, operator_id, Deleted::Hidden).await?;
        if access.org.kind != OrganizationKind::Operator as i32 {
            return Err(Error::NotAnOperator {
                organization_id: access.org.id.clone(),
            });
        }
        access.require(OrgAction::ManageOrganization)?;
        Ok(access)
    }
}
