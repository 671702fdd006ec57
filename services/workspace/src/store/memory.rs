//! The in-memory mirror of this service's own data that CheckAccess reads: workspaces (their
//! organization and state), direct memberships, and the API-key replica. It is kept in step with
//! the database after every commit. Transactions hold no lock of this process (several replicas
//! share the database, which alone decides conflicts); refreshes run one at a time under
//! [`Memory::refresh_lock`] and each re-reads what it touched after its commit, so the last
//! refresh of an entry always reflects the newest committed state.
//!
//! Every transaction that changes workspaces or memberships bumps `workspace_state_version`
//! (one row updated in that transaction and locked until it commits, so versions commit in
//! order). The lock guards the version the memory reflects in full. A local write whose version
//! follows it directly refreshes only what it changed; one at or below it is already reflected;
//! anything else (another replica's write, an event's effect, a local write that committed later
//! but refreshes first) leads to a full reload, by the writer itself or by the poller
//! ([`Memory::poll`]).
//!
//! That version is this service's `workspace_revision`: mutating responses return the version
//! their transaction set, and CheckAccess with `min_workspace_revision` waits in
//! [`Memory::wait_reflected`] until the memory reflects it. A replica that is behind wakes its
//! poller at once rather than at the next interval, so "remove, then check on another replica"
//! never answers from before the removal.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use orgplane_platform::replica::intern::intern;
use std::time::Duration;

use futures::TryStreamExt;
use orgplane_proto::workspace::v1::{WorkspaceRole, WorkspaceState};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::{Mutex, MutexGuard, Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::domain::model::workspace_role;
use crate::store::entity::{api_key, member, version, workspace};

/// One workspace as CheckAccess needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceView {
    /// Its organization.
    pub organization_id: String,
    /// ACTIVE or ARCHIVED.
    pub state: WorkspaceState,
}

/// One API key as CheckAccess needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// Its organization.
    pub organization_id: String,
    /// Its workspace; empty for admin keys and the Default Workspace.
    pub workspace_id: String,
    /// An admin key.
    pub admin: bool,
    /// Accepted.
    pub active: bool,
}

/// Everything mirrored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Views {
    /// Workspaces by id.
    pub workspaces: HashMap<String, WorkspaceView>,
    /// Direct roles: workspace id → user id → role. User ids are interned (shared with the
    /// role replicas of the process).
    pub members: HashMap<String, HashMap<Arc<str>, WorkspaceRole>>,
    /// API keys by id.
    pub keys: HashMap<String, KeyView>,
}

/// The mirror; cheap to clone.
#[derive(Clone, Debug)]
pub struct Memory {
    db: DatabaseConnection,
    views: Arc<RwLock<Views>>,
    refresh: Arc<Mutex<i64>>,
    reflected: Arc<watch::Sender<i64>>,
    behind: Arc<Notify>,
}

/// Held while the memory is refreshed; derefs to the state version the memory reflects in full.
pub type RefreshGuard<'a> = MutexGuard<'a, i64>;

fn view_of(w: &workspace::Model) -> WorkspaceView {
    WorkspaceView {
        organization_id: w.organization_id.clone(),
        state: WorkspaceState::try_from(w.state).unwrap_or(WorkspaceState::Unspecified),
    }
}

impl Memory {
    /// The mirror of `db`, loaded.
    pub async fn load(db: DatabaseConnection) -> Result<Self, DbErr> {
        let memory = Self {
            db,
            views: Arc::new(RwLock::new(Views::default())),
            refresh: Arc::new(Mutex::new(0)),
            reflected: Arc::new(watch::channel(0).0),
            behind: Arc::new(Notify::new()),
        };
        let mut guard = memory.refresh.lock().await;
        memory.reload_all(&mut guard).await?;
        drop(guard);
        Ok(memory)
    }

    /// Reads the views.
    pub fn read<T>(&self, f: impl FnOnce(&Views) -> T) -> T {
        f(&self.views.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write_views<T>(&self, f: impl FnOnce(&mut Views) -> T) -> T {
        f(&mut self.views.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// The lock every refresh of the memory holds, so that refreshes apply in the order they
    /// read the database. Never held across a transaction.
    pub async fn refresh_lock(&self) -> RefreshGuard<'_> {
        self.refresh.lock().await
    }

    /// The state version (`workspace_revision`) the memory reflects at least.
    pub fn reflected_version(&self) -> i64 {
        *self.reflected.borrow()
    }

    /// Records under the refresh lock that the memory now reflects `version` in full, and tells
    /// waiters. Called only after the views were written, so a reader of
    /// [`Self::reflected_version`] sees views at least that new.
    fn reflect(&self, guard: &mut RefreshGuard<'_>, version: i64) {
        **guard = version;
        self.reflected.send_if_modified(|v| {
            if version > *v {
                *v = version;
                true
            } else {
                false
            }
        });
    }

    /// Waits until the memory reflects state version `min`, for at most `within`; false when it
    /// does not by then. When behind, wakes the poller at once to re-read the database (one
    /// refresh however many callers wait), instead of leaving the gap to the next interval.
    pub async fn wait_reflected(&self, min: i64, within: Duration) -> bool {
        if self.reflected_version() >= min {
            return true;
        }
        let mut rx = self.reflected.subscribe();
        self.behind.notify_one();
        matches!(
            tokio::time::timeout(within, rx.wait_for(|v| *v >= min)).await,
            Ok(Ok(_))
        )
    }

    /// Replaces everything with the database's state.
    pub async fn reload_all(&self, guard: &mut RefreshGuard<'_>) -> Result<(), DbErr> {
        // Read first: every row read below is at least this new.
        let v = current_version(&self.db).await?;
        let mut views = Views::default();
        for w in workspace::Entity::find().all(&self.db).await? {
            views.workspaces.insert(w.id.clone(), view_of(&w));
        }
        let mut rows = std::pin::pin!(member::Entity::find().stream(&self.db).await?);
        while let Some(m) = rows.try_next().await? {
            views
                .members
                .entry(m.workspace_id)
                .or_default()
                .insert(intern(&m.user_id), workspace_role(m.role));
        }
        for k in api_key::Entity::find().all(&self.db).await? {
            views.keys.insert(
                k.api_key_id,
                KeyView {
                    organization_id: k.organization_id,
                    workspace_id: k.workspace_id,
                    admin: k.admin,
                    active: k.active,
                },
            );
        }
        self.write_views(|m| {
            m.workspaces = views.workspaces;
            m.members = views.members;
            m.keys = views.keys;
        });
        self.reflect(guard, v);
        Ok(())
    }

    /// Re-reads one organization's workspaces and memberships.
    pub async fn reload_organization(&self, organization_id: &str) -> Result<(), DbErr> {
        let workspaces = workspace::Entity::find()
            .filter(workspace::Column::OrganizationId.eq(organization_id))
            .all(&self.db)
            .await?;
        let members = member::Entity::find()
            .filter(member::Column::OrganizationId.eq(organization_id))
            .all(&self.db)
            .await?;
        self.write_views(|m| {
            let stale: Vec<String> = m
                .workspaces
                .iter()
                .filter(|(_, w)| w.organization_id == organization_id)
                .map(|(id, _)| id.clone())
                .collect();
            for id in stale {
                m.workspaces.remove(&id);
                m.members.remove(&id);
            }
            for w in &workspaces {
                m.workspaces.insert(w.id.clone(), view_of(w));
                m.members.remove(&w.id);
            }
            for r in members {
                m.members
                    .entry(r.workspace_id)
                    .or_default()
                    .insert(intern(&r.user_id), workspace_role(r.role));
            }
        });
        Ok(())
    }

    /// After a local transaction that bumped the state version to `bumped` (changing only
    /// `organization_id`) committed: refreshes the memory.
    pub async fn after_write(&self, organization_id: &str, bumped: i64) -> Result<(), DbErr> {
        let mut guard = self.refresh.lock().await;
        self.after_commit(&mut guard, bumped, || {
            self.reload_organization(organization_id)
        })
        .await
    }

    /// Brings the memory past the local write that bumped the version to `bumped`: nothing to
    /// re-read when a full reload already covered it (the version row orders commits, so a
    /// reflected later version implies this one), `partial` when it directly follows what the
    /// memory reflects, else a full reload (a write in between is not reflected yet).
    async fn after_commit<F, Fut>(
        &self,
        guard: &mut RefreshGuard<'_>,
        bumped: i64,
        partial: F,
    ) -> Result<(), DbErr>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), DbErr>>,
    {
        if bumped <= **guard {
            Ok(())
        } else if bumped == **guard + 1 {
            partial().await?;
            self.reflect(guard, bumped);
            Ok(())
        } else {
            self.reload_all(guard).await
        }
    }

    /// Re-reads one direct membership (`workspace_id`, `user_id`) into memory.
    pub async fn reload_member(&self, workspace_id: &str, user_id: &str) -> Result<(), DbErr> {
        let row = member::Entity::find_by_id((workspace_id.to_owned(), user_id.to_owned()))
            .one(&self.db)
            .await?;
        self.write_views(|m| match row {
            Some(r) => {
                m.members
                    .entry(r.workspace_id)
                    .or_default()
                    .insert(intern(&r.user_id), workspace_role(r.role));
            }
            None => {
                if let Some(users) = m.members.get_mut(workspace_id) {
                    users.remove(user_id);
                    if users.is_empty() {
                        m.members.remove(workspace_id);
                    }
                }
            }
        });
        Ok(())
    }

    /// Like [`Self::after_write`] for a local transaction that changed only the direct role of
    /// `user_id` in `workspace_id`: refreshes that one row (O(1)) instead of the whole
    /// organization (O(members)), or everything when another write came in between.
    pub async fn after_member_write(
        &self,
        workspace_id: &str,
        user_id: &str,
        bumped: i64,
    ) -> Result<(), DbErr> {
        let mut guard = self.refresh.lock().await;
        self.after_commit(&mut guard, bumped, || {
            self.reload_member(workspace_id, user_id)
        })
        .await
    }

    /// Applies API-key changes to memory (after their transaction committed).
    pub fn put_key(&self, api_key_id: &str, key: Option<KeyView>) {
        self.write_views(|m| match key {
            Some(k) => {
                m.keys.insert(api_key_id.to_owned(), k);
            }
            None => {
                m.keys.remove(api_key_id);
            }
        });
    }

    /// Sets a key's status in memory.
    pub fn set_key_active(&self, api_key_id: &str, active: bool) {
        self.write_views(|m| {
            if let Some(k) = m.keys.get_mut(api_key_id) {
                k.active = active;
            }
        });
    }

    /// Moves the keys of merged organization `candidate` to `prime` (rule ORG-15).
    pub fn move_keys(&self, candidate: &str, prime: &str) {
        self.write_views(|m| {
            for k in m.keys.values_mut() {
                if k.organization_id == candidate {
                    k.organization_id = prime.to_owned();
                }
            }
        });
    }

    /// Forgets the keys of a purged organization.
    pub fn forget_keys_of(&self, organization_id: &str) {
        self.write_views(|m| m.keys.retain(|_, k| k.organization_id != organization_id));
    }

    /// Reloads everything whenever the database's state version is ahead of the memory's
    /// (another replica wrote, or an event changed memberships), every `every` and at once when
    /// [`Self::wait_reflected`] finds the memory behind, until `shutdown`.
    pub fn poll(&self, every: Duration, shutdown: CancellationToken) {
        let memory = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {},
                    _ = memory.behind.notified() => {},
                }
                let mut guard = memory.refresh.lock().await;
                let result = match current_version(&memory.db).await {
                    Ok(v) if v != *guard => memory.reload_all(&mut guard).await,
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "refreshing the workspace memory failed");
                }
            }
        });
    }
}

/// The database's state version.
pub async fn current_version<C: ConnectionTrait>(db: &C) -> Result<i64, DbErr> {
    Ok(version::Entity::find_by_id(1)
        .one(db)
        .await?
        .map(|v| v.version)
        .unwrap_or(0))
}

/// Bumps the state version inside `txn` and returns the new value.
pub async fn bump_version<C: ConnectionTrait>(txn: &C) -> Result<i64, DbErr> {
    let updated = version::Entity::update_many()
        .col_expr(
            version::Column::Version,
            Expr::col(version::Column::Version).add(1),
        )
        .filter(version::Column::Id.eq(1))
        .exec_with_returning(txn)
        .await?;
    updated
        .first()
        .map(|v| v.version)
        .ok_or_else(|| DbErr::Custom("workspace_state_version row missing".into()))
}
