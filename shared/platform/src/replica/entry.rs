//! The memory view's entries: one organization, and its members keyed by interned user ids
//! ([`super::intern`]), so that the replicas of one process share each id's bytes.

use std::collections::HashMap;
use std::sync::Arc;

use orgplane_proto::organization::v1::{OrgRole, OrganizationState};

use super::intern::intern;
use crate::policy::SecurityPolicy;

/// An organization's members and their roles, by user id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members(HashMap<Arc<str>, OrgRole>);

impl Members {
    /// The role of `user_id`.
    pub fn get(&self, user_id: &str) -> Option<&OrgRole> {
        self.0.get(user_id)
    }

    /// Whether `user_id` is a member.
    pub fn contains_key(&self, user_id: &str) -> bool {
        self.0.contains_key(user_id)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every member and role, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, OrgRole)> {
        self.0.iter().map(|(u, r)| (&**u, *r))
    }

    /// Sets the role of `user_id` (its id interned when new here); returns the previous one.
    pub fn insert(&mut self, user_id: &str, role: OrgRole) -> Option<OrgRole> {
        match self.0.get_mut(user_id) {
            Some(r) => Some(std::mem::replace(r, role)),
            None => self.0.insert(intern(user_id), role),
        }
    }

    /// Removes `user_id`; returns its role.
    pub fn remove(&mut self, user_id: &str) -> Option<OrgRole> {
        self.0.remove(user_id)
    }

    /// Removes every member.
    pub fn clear(&mut self) {
        self.0 = HashMap::new();
    }

    pub(super) fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }
}

impl IntoIterator for Members {
    type Item = (String, OrgRole);
    type IntoIter = std::vec::IntoIter<(String, OrgRole)>;

    /// Owned copies of the members (for callers that keep them beyond the replica's lock).
    fn into_iter(self) -> Self::IntoIter {
        self.0
            .into_iter()
            .map(|(u, r)| (u.to_string(), r))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// One organization in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgEntry {
    /// Its name.
    pub name: String,
    /// Its primary email.
    pub primary_email: String,
    /// Its owner.
    pub owner_user_id: String,
    /// ACTIVE, DELETED or MERGED (rule ORG-15).
    pub state: i32,
    /// Members and their roles.
    pub members: Members,
    /// Its security policy (rule ORG-16).
    pub policy: SecurityPolicy,
}

impl OrgEntry {
    /// True while the organization is ACTIVE.
    pub fn is_active(&self) -> bool {
        self.state == OrganizationState::Active as i32
    }

    /// True once the organization was merged into another (rule ORG-15): a tombstone that
    /// answers NOT_FOUND to everyone, unlike a DELETED one (restorable, known to its OWNER).
    pub fn is_merged(&self) -> bool {
        self.state == OrganizationState::Merged as i32
    }
}

pub(super) fn role_of(v: i32) -> OrgRole {
    OrgRole::try_from(v).unwrap_or(OrgRole::Unspecified)
}
