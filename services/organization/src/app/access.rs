//! The caller's standing in one organization, read from the database and judged by
//! [`crate::domain::authz`], and the admission of the calling user's sign-in under the
//! organization's security policy (rule ORG-16).

use orgplane_platform::auth::Principal;
use orgplane_platform::policy::DEFAULT_REAUTH_MAX_AGE_SECS;
use orgplane_platform::roles::OrgAction;
use orgplane_proto::organization::v1::{OrgRole, OrganizationState};
use sea_orm::{ConnectionTrait, EntityTrait};

use super::settings::{PolicyLayers, layers, policy_defaults};
use crate::domain::authz::{self, Deleted, OperatorRole, Standing};
use crate::domain::validate::role_of;
use crate::domain::{Error, Result};
use crate::store::{member, organization, security_policy, user_profile};

/// A caller's access to one visible organization.
#[derive(Debug, Clone)]
pub struct Access {
    /// The organization.
    pub org: organization::Model,
    /// The caller's standing in it.
    pub standing: Standing,
    /// Its own security policy and its operator's (rule ORG-13).
    pub policy: PolicyLayers,
}

impl Access {
    /// Resolves `principal`'s access to `organization_id`, or NOT_FOUND when it may not see it;
    /// UNAUTHENTICATED `MFA_REQUIRED` (or `SSO_REQUIRED`) when the caller is a member whose
    /// sign-in the organization's security policy does not accept (rule ORG-16).
    pub async fn resolve<C: ConnectionTrait>(
        db: &C,
        principal: &Principal,
        organization_id: &str,
        deleted: Deleted,
    ) -> Result<Access> {
        Ok(
            Self::resolve_reading(db, principal, organization_id, deleted, None)
                .await?
                .0,
        )
    }

    /// [`Access::resolve`], with the membership of `member_user_id` and its user's stored
    /// profile read in the same statement (`None` when they are not a member). The caller judges
    /// the access before it uses the membership, as it would have before reading it.
    pub async fn resolve_with_member<C: ConnectionTrait>(
        db: &C,
        principal: &Principal,
        organization_id: &str,
        deleted: Deleted,
        member_user_id: &str,
    ) -> Result<(Access, Option<Membership>)> {
        Self::resolve_reading(
            db,
            principal,
            organization_id,
            deleted,
            Some(member_user_id),
        )
        .await
    }

    async fn resolve_reading<C: ConnectionTrait>(
        db: &C,
        principal: &Principal,
        organization_id: &str,
        deleted: Deleted,
        member_user_id: Option<&str>,
    ) -> Result<(Access, Option<Membership>)> {
        authz::require_caller(principal)?;
        let not_found = || Error::not_found("organization", organization_id);
        let user_id = match principal {
            Principal::User(u) => Some(u.user_id.as_str()),
            _ => None,
        };
        let Rows {
            org,
            caller: membership,
            own_policy,
            member,
        } = read_standing(db, organization_id, user_id, member_user_id)
            .await?
            .ok_or_else(not_found)?;
        // A MERGED organization is a tombstone (rule ORG-15): gone for every caller and every
        // RPC; GetOrganization answers its former OWNER before asking here.
        if org.state == OrganizationState::Merged as i32 {
            return Err(not_found());
        }
        let role = membership.map(|m| role_of(m.role));
        let is_deleted = org.state == OrganizationState::Deleted as i32;
        let operator = match principal {
            Principal::User(u) => operator_role(db, &org, &u.user_id, role).await?,
            _ => None,
        };
        let standing = authz::standing(principal, &org.id, is_deleted, role, operator, deleted)
            .ok_or_else(not_found)?;
        // Admission judges the policy in force (its operator's ENFORCED or inherited MFA and
        // sign-in methods included, rule ORG-13). The re-authentication age plays no part in
        // admission: the platform's default will do.
        let policy = if org.operator_id.is_empty() {
            PolicyLayers {
                organization_id: org.id.clone(),
                own: own_policy,
                operator: None,
            }
        } else {
            layers::<security_policy::Model, _>(db, &org).await?
        };
        policy
            .effective(&policy_defaults(DEFAULT_REAUTH_MAX_AGE_SECS))
            .model
            .policy()
            .admit_principal(&org.id, principal, admission_role(&standing, role))?;
        Ok((
            Access {
                org,
                standing,
                policy,
            },
            member,
        ))
    }

    /// For the acts an operator may perform in its children (ORG-13): PERMISSION_DENIED unless
    /// the caller acts as the operator or may perform `action`.
    pub fn require_or_operator(&self, action: OrgAction) -> Result<()> {
        self.standing.require_or_operator(action)
    }

    /// The operator organization when the caller acts as the operator (ORG-13), for
    /// [`orgplane_platform::audit::Entry::as_operator`].
    pub fn acting_operator(&self) -> Option<&str> {
        self.standing.acting_operator()
    }

    /// Whether the caller may perform `action` here.
    pub fn allows(&self, action: OrgAction) -> bool {
        self.standing.allows(action)
    }

    /// PERMISSION_DENIED unless the caller may perform `action`.
    pub fn require(&self, action: OrgAction) -> Result<()> {
        self.standing.require(action)
    }

    /// The calling user's id, when the caller is a member.
    pub fn user_id(&self) -> Option<&str> {
        self.standing.user_id()
    }

    /// The calling user's role, when the caller is a member.
    pub fn role(&self) -> Option<OrgRole> {
        match &self.standing {
            Standing::Member { role, .. } => Some(*role),
            _ => None,
        }
    }
}

/// The role a caller's sign-in is judged as (ORG-16): a member's own role; for the operator acting
/// in a child, its OWNER or ADMIN role in the operator (privileged under
/// REQUIRED_FOR_PRIVILEGED_ROLES, as the child's own admins are).
fn admission_role(standing: &Standing, member_role: Option<OrgRole>) -> Option<OrgRole> {
    match standing {
        Standing::Operator { role, .. } => Some(*role),
        _ => member_role,
    }
}

/// The user's administering role in `org`'s operator (ORG-13): read only for a child whose
/// caller is not already its OWNER or an ADMIN, and only while the operator is ACTIVE.
pub(super) async fn operator_role<C: ConnectionTrait>(
    db: &C,
    org: &organization::Model,
    user_id: &str,
    role: Option<OrgRole>,
) -> Result<Option<OperatorRole>> {
    if org.operator_id.is_empty() || matches!(role, Some(OrgRole::Owner | OrgRole::Admin)) {
        return Ok(None);
    }
    let active = organization::Entity::find_by_id(org.operator_id.clone())
        .one(db)
        .await?
        .is_some_and(|o| o.state == OrganizationState::Active as i32);
    if !active {
        return Ok(None);
    }
    Ok(
        member::Entity::find_by_id((org.operator_id.clone(), user_id.to_owned()))
            .one(db)
            .await?
            .and_then(|m| OperatorRole::administering(&org.operator_id, role_of(m.role))),
    )
}

/// A membership read with [`Access::resolve_with_member`].
#[derive(Debug, Clone)]
pub struct Membership {
    /// The membership.
    pub member: member::Model,
    /// Its user's name and email as this service keeps them (`None`: no copy yet).
    pub profile: Option<user_profile::Model>,
}

/// What [`Access::resolve`] reads of one organization.
struct Rows {
    org: organization::Model,
    /// The calling user's membership.
    caller: Option<member::Model>,
    /// The organization's own security policy row.
    own_policy: Option<security_policy::Model>,
    /// The membership asked for with [`Access::resolve_with_member`].
    member: Option<Membership>,
}

/// Organization `organization_id` with the memberships of the calling user (`caller`) and of
/// `member` (with the member's stored profile), when asked, and its own security policy row, in
/// one statement: every call resolves
/// its access, and on SQLite each statement is a hand-off to a connection's thread and back,
/// which costs more than the reads themselves. `None` when there is no such organization.
async fn read_standing<C: ConnectionTrait>(
    db: &C,
    organization_id: &str,
    caller: Option<&str>,
    member: Option<&str>,
) -> Result<Option<Rows>> {
    use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, JoinType, Query};
    use sea_orm::{FromQueryResult, QueryResult};
    let org_id = (organization::Entity, organization::Column::Id);
    let mut q = Query::select();
    select_prefixed::<organization::Entity>(&mut q, organization::Entity, "o_");
    select_prefixed::<security_policy::Entity>(&mut q, security_policy::Entity, "p_");
    q.from(organization::Entity)
        .join(
            JoinType::LeftJoin,
            security_policy::Entity,
            Expr::col((
                security_policy::Entity,
                security_policy::Column::OrganizationId,
            ))
            .equals(org_id),
        )
        .and_where(Expr::col(org_id).eq(organization_id));
    for (alias, user_id) in [("caller", caller), ("member", member)] {
        let Some(user_id) = user_id else { continue };
        let table = Alias::new(alias);
        select_prefixed::<member::Entity>(&mut q, table.clone(), &format!("{alias}_"));
        q.join_as(
            JoinType::LeftJoin,
            member::Entity,
            table.clone(),
            Condition::all()
                .add(Expr::col((table.clone(), member::Column::OrganizationId)).equals(org_id))
                .add(Expr::col((table, member::Column::UserId)).eq(user_id)),
        );
    }
    if let Some(user_id) = member {
        select_prefixed::<user_profile::Entity>(&mut q, user_profile::Entity, "up_");
        q.join(
            JoinType::LeftJoin,
            user_profile::Entity,
            Expr::col((user_profile::Entity, user_profile::Column::UserId)).eq(user_id),
        );
    }
    let Some(row): Option<QueryResult> = db.query_one(&q).await? else {
        return Ok(None);
    };
    let membership = |asked: Option<&str>, prefix: &str| match asked {
        Some(_) => Option::<member::Model>::from_query_result(&row, prefix),
        None => Ok(None),
    };
    Ok(Some(Rows {
        org: organization::Model::from_query_result(&row, "o_")?,
        caller: membership(caller, "caller_")?,
        own_policy: Option::<security_policy::Model>::from_query_result(&row, "p_")?,
        member: match membership(member, "member_")? {
            Some(m) => Some(Membership {
                member: m,
                profile: Option::<user_profile::Model>::from_query_result(&row, "up_")?,
            }),
            None => None,
        },
    }))
}

/// Selects every column of `E` from `table`, named `prefix` + its name (as sea-orm's combined
/// selects do).
fn select_prefixed<E: EntityTrait>(
    q: &mut sea_orm::sea_query::SelectStatement,
    table: impl sea_orm::sea_query::IntoIden + Clone,
    prefix: &str,
) {
    use sea_orm::{ColumnTrait, IdenStatic, Iterable};
    for column in E::Column::iter() {
        q.expr_as(
            column.select_as(sea_orm::sea_query::Expr::col((table.clone(), column))),
            sea_orm::sea_query::Alias::new(format!("{prefix}{}", column.as_str())),
        );
    }
}

/// NOT_FOUND of the organization becomes NOT_FOUND of the resource `resource` `id` that led to it
/// (the caller may not know the organization's id); other errors stand.
pub fn as_not_found_of<'a>(
    resource: &'static str,
    id: &'a str,
) -> impl FnOnce(Error) -> Error + 'a {
    move |e| {
        if e.is_not_found() {
            Error::not_found(resource, id)
        } else {
            e
        }
    }
}
