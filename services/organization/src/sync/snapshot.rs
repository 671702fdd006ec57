//! The snapshot this service serves to the services that replicate org roles: the
//! `ListRoleAssignments` pages they re-sync from after a compaction of this service's stream.

use std::collections::{BTreeMap, HashMap};

use orgplane_platform::Call;
use orgplane_platform::auth::Capability;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::app::App;
use crate::app::settings::layers_of;
use crate::domain::Result;
use crate::store::query::keyset;
use crate::store::{domain, member, organization, security_policy};
use orgplane_proto::organization::v1::DomainState;

/// One organization of a snapshot page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationRoles {
    /// The organization.
    pub organization: organization::Model,
    /// `(user id, OrgRole number)` of (some of) its members, in user id order.
    pub roles: Vec<(String, i32)>,
    /// Its security policy in force, its operator's values and defaults included (rules ORG-16,
    /// ORG-13).
    pub security_policy: security_policy::Model,
    /// Its VERIFIED domains (rule ORG-14), by name.
    pub verified_domains: Vec<domain::Model>,
}

/// One page of the role snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSnapshot {
    /// Organizations in id order, with their members' roles and their security policy.
    pub organizations: Vec<OrganizationRoles>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
    /// The revision every page reflects at least.
    pub revision: i64,
}

impl App {
    /// ListRoleAssignments: a snapshot of every organization not yet purged with its members'
    /// roles, its security policy and its VERIFIED domains (on every page it appears on),
    /// ordered by organization id then user id; the revision is fixed by the first page
    /// (read before the rows, so every page reflects at least every change up to it) and
    /// carried in the page token. A MERGED organization (rule ORG-15) appears as a tombstone:
    /// state MERGED, `merged_into_organization_id` set, no members and no domains — so that a
    /// consumer re-syncing after compaction moves what it holds of it to the prime instead of
    /// purging it, and grants nothing in it.
    pub async fn list_role_assignments(
        &self,
        call: &Call,
        page_size: i32,
        page_token: &str,
    ) -> Result<RoleSnapshot> {
        call.principal
            .require_capability(Capability::WatchOrganization)?;
        let size = orgplane_platform::pagination::page_size(page_size)?;
        let scope = "ListRoleAssignments";
        let cursor: Option<(i64, String, String)> =
            self.runtime.page_tokens.decode(scope, page_token)?;
        let (revision, after) = match cursor {
            Some((r, org, user)) => (r, Some((org, user))),
            None => (self.head_revision().await?, None),
        };
        let after_org = after.as_ref().map(|(org, _)| org.clone());
        let mut query = member::Entity::find();
        if let Some((org, user)) = after {
            query = query.filter(keyset(
                member::Column::OrganizationId,
                org,
                member::Column::UserId,
                user,
                false,
            ));
        }
        let rows = query
            .order_by_asc(member::Column::OrganizationId)
            .order_by_asc(member::Column::UserId)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let (rows, next_page_token) = self.runtime.page_tokens.page(scope, rows, size, |m| {
            (revision, m.organization_id.clone(), m.user_id.clone())
        });
        // Organizations without members (a child awaiting its first owner, rule ORG-13) are in
        // the page whose member rows span their id: after the previous page's last organization,
        // up to this page's last one (to the end on the last page).
        let upper = (!next_page_token.is_empty())
            .then(|| rows.last().map(|m| m.organization_id.clone()))
            .flatten();
        let memberless = self.memberless_organizations(after_org, upper).await?;
        let mut org_ids: Vec<String> = rows.iter().map(|m| m.organization_id.clone()).collect();
        org_ids.dedup();
        org_ids.extend(memberless.iter().cloned());
        let mut orgs: HashMap<String, organization::Model> = organization::Entity::find()
            .filter(organization::Column::Id.is_in(org_ids.clone()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        let mut domains: HashMap<String, Vec<domain::Model>> = HashMap::new();
        for d in domain::Entity::find()
            .filter(domain::Column::OrganizationId.is_in(org_ids))
            .filter(domain::Column::State.eq(DomainState::Verified as i32))
            .order_by_asc(domain::Column::DomainName)
            .all(&self.db)
            .await?
        {
            domains
                .entry(d.organization_id.clone())
                .or_default()
                .push(d);
        }
        let all: Vec<organization::Model> = orgs.values().cloned().collect();
        let mut policies = layers_of::<security_policy::Model, _>(&self.db, &all).await?;
        let mut grouped: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
        for id in memberless {
            grouped.entry(id).or_default();
        }
        for m in rows {
            grouped
                .entry(m.organization_id.clone())
                .or_default()
                .push((m.user_id, m.role));
        }
        let organizations = grouped
            .into_iter()
            // A member row without its organization can only be a purge racing this read.
            .filter_map(|(id, roles)| {
                let organization = orgs.remove(&id)?;
                let security_policy = self.security_policy_of(&policies.remove(&id)?).model;
                Some(OrganizationRoles {
                    organization,
                    roles,
                    security_policy,
                    verified_domains: domains.remove(&id).unwrap_or_default(),
                })
            })
            .collect();
        Ok(RoleSnapshot {
            organizations,
            next_page_token,
            revision,
        })
    }

    /// The ids of the organizations without members whose id is after `after` and at most
    /// `upto` (either bound may be open), in id order.
    async fn memberless_organizations(
        &self,
        after: Option<String>,
        upto: Option<String>,
    ) -> Result<Vec<String>> {
        let mut members = Query::select();
        members.expr(Expr::val(1)).from(member::Entity).and_where(
            Expr::col((member::Entity, member::Column::OrganizationId))
                .equals((organization::Entity, organization::Column::Id)),
        );
        let mut query = organization::Entity::find()
            .select_only()
            .column(organization::Column::Id)
            .filter(Expr::exists(members).not());
        if let Some(after) = after {
            query = query.filter(organization::Column::Id.gt(after));
        }
        if let Some(upto) = upto {
            query = query.filter(organization::Column::Id.lte(upto));
        }
        Ok(query
            .order_by_asc(organization::Column::Id)
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }
}
