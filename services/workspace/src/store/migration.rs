//! The workspace service's database schema, as sea-orm migrations run at start-up and by
//! `orgplane migrate`.

use orgplane_platform::audit::{AddAuditActorOrganization, CreateAuditLog};
use orgplane_platform::events::migration::{
    CreateConsumerCursors, CreateOutbox, CreateWriteGuards,
};
use orgplane_platform::replica::{
    CreateRoleReplica, CreateSecurityPolicyReplica, CreateVerifiedDomainReplica,
};
use orgplane_platform::revocation::CreateSessionRevocations;
use sea_orm_migration::prelude::*;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Every migration of the workspace database, in order.
#[derive(Debug, Clone, Copy)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateConsumerCursors),
            Box::new(CreateAuditLog),
            Box::new(CreateRoleReplica),
            Box::new(CreateWorkspaces),
            Box::new(CreateSessionRevocations),
            Box::new(AddRowVersions),
            Box::new(CreateSecurityPolicyReplica),
            Box::new(CreateVerifiedDomainReplica),
            Box::new(AddAuditActorOrganization),
            Box::new(CreateWriteGuards),
        ]
    }
}

/// Workspaces, direct memberships, the quota counters, idempotency keys, the API-key replica and
/// the state version. Plain SQL that SQLite and PostgreSQL both accept (the partial unique index
/// on active names has no builder in sea-query).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateWorkspaces;

impl MigrationName for CreateWorkspaces {
    fn name(&self) -> &str {
        "m20261124_000001_create_workspaces"
    }
}

const UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS workspaces (
        id TEXT NOT NULL PRIMARY KEY,
        organization_id TEXT NOT NULL,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        state INTEGER NOT NULL,
        create_time_ms BIGINT NOT NULL,
        update_time_ms BIGINT NOT NULL,
        archive_time_ms BIGINT NULL,
        etag TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_workspaces_org ON workspaces (organization_id, id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_workspaces_active_name
        ON workspaces (organization_id, name_key) WHERE state = 1",
    "CREATE TABLE IF NOT EXISTS workspace_members (
        workspace_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        organization_id TEXT NOT NULL,
        role INTEGER NOT NULL,
        create_time_ms BIGINT NOT NULL,
        update_time_ms BIGINT NOT NULL,
        etag TEXT NOT NULL,
        PRIMARY KEY (workspace_id, user_id))",
    "CREATE INDEX IF NOT EXISTS idx_workspace_members_org_user
        ON workspace_members (organization_id, user_id)",
    "CREATE INDEX IF NOT EXISTS idx_workspace_members_user ON workspace_members (user_id)",
    "CREATE TABLE IF NOT EXISTS workspace_org_counters (
        organization_id TEXT NOT NULL PRIMARY KEY,
        active_count BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS workspace_requests (
        request_key TEXT NOT NULL PRIMARY KEY,
        organization_id TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        revision BIGINT NOT NULL,
        create_time_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS replica_api_keys (
        api_key_id TEXT NOT NULL PRIMARY KEY,
        organization_id TEXT NOT NULL,
        workspace_id TEXT NOT NULL,
        admin BOOLEAN NOT NULL,
        active BOOLEAN NOT NULL)",
    "CREATE TABLE IF NOT EXISTS workspace_state_version (
        id INTEGER NOT NULL PRIMARY KEY,
        version BIGINT NOT NULL)",
    "INSERT INTO workspace_state_version (id, version) VALUES (1, 0)",
];

const DOWN: &[&str] = &[
    "DROP TABLE IF EXISTS workspace_state_version",
    "DROP TABLE IF EXISTS replica_api_keys",
    "DROP TABLE IF EXISTS workspace_requests",
    "DROP TABLE IF EXISTS workspace_org_counters",
    "DROP TABLE IF EXISTS workspace_members",
    "DROP TABLE IF EXISTS workspaces",
];

#[async_trait::async_trait]
impl MigrationTrait for CreateWorkspaces {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in UP {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in DOWN {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// Integer row versions on workspaces and direct memberships, replacing the random etags stored
/// in a column: the etag is `v<version>` (`convert::etag`), and conditional updates match
/// `version = <read version>` so that of racing writers exactly one wins. Existing rows start at
/// 1.
///
/// On PostgreSQL (where replicas of two releases share the database during a rolling update) it
/// only expands: the old `etag` column stays, with a default the new code leaves in place, and
/// goes in a later release. The embedded SQLite database has one process, and drops it at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddRowVersions;

impl MigrationName for AddRowVersions {
    fn name(&self) -> &str {
        "m20261203_000001_workspace_row_versions"
    }
}

const ADD_VERSIONS: &[&str] = &[
    "ALTER TABLE workspaces ADD COLUMN version BIGINT NOT NULL DEFAULT 1",
    "ALTER TABLE workspace_members ADD COLUMN version BIGINT NOT NULL DEFAULT 1",
];

const RETIRE_ETAGS_SQLITE: &[&str] = &[
    "ALTER TABLE workspaces DROP COLUMN etag",
    "ALTER TABLE workspace_members DROP COLUMN etag",
];

const RETIRE_ETAGS_POSTGRES: &[&str] = &[
    "ALTER TABLE workspaces ALTER COLUMN etag SET DEFAULT ''",
    "ALTER TABLE workspace_members ALTER COLUMN etag SET DEFAULT ''",
];

const DROP_VERSIONS_SQLITE: &[&str] = &[
    "ALTER TABLE workspaces ADD COLUMN etag TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE workspaces DROP COLUMN version",
    "ALTER TABLE workspace_members ADD COLUMN etag TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE workspace_members DROP COLUMN version",
];

const DROP_VERSIONS_POSTGRES: &[&str] = &[
    "ALTER TABLE workspaces DROP COLUMN version",
    "ALTER TABLE workspace_members DROP COLUMN version",
];

#[async_trait::async_trait]
impl MigrationTrait for AddRowVersions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let retire = match db.get_database_backend() {
            sea_orm::DbBackend::Sqlite => RETIRE_ETAGS_SQLITE,
            _ => RETIRE_ETAGS_POSTGRES,
        };
        for sql in ADD_VERSIONS.iter().chain(retire) {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements = match db.get_database_backend() {
            sea_orm::DbBackend::Sqlite => DROP_VERSIONS_SQLITE,
            _ => DROP_VERSIONS_POSTGRES,
        };
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
