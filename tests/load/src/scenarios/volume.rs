//! The membership volume of issue 23 (1M organization members across 10k organizations, 100k
//! workspace memberships), written set-wise into the databases of a stopped rig.
//!
//! Seeding that volume through events would take minutes (every `MemberAdded` applied one by
//! one by three consumers), so this bench-only path writes the rows every service would hold
//! after those events, in bulk transactions and in the same state: the organization service's
//! `organizations` and `members`; in identity, workspace and billing-access the role replica's
//! `replica_organizations` and `replica_members`; in workspace one workspace per organization
//! (`workspaces`, `workspace_org_counters`) and direct roles (`workspace_members`). No event is
//! appended and no cursor moves: every replica's tables already reflect the rows, and the memory
//! views are rebuilt from the tables when the process starts, which is what is measured. Not
//! written: identity's users (no memory view holds them) and billing accounts (billing-access
//! opens them on `OrganizationCreated`; none of its memory depends on them).
//!
//! Ids have the production shape (`org_` / `user_` / `wrkspc_` and 32 hex digits, time-ordered
//! like UUIDv7), so the memory per entry is what a real deployment pays.

use orgplane::{Cli, Service};
use orgplane_organization::store::{member as org_member, organization};
use orgplane_platform::replica::{member_row, org_row};
use orgplane_proto::organization::v1::{OrgRole, OrganizationState};
use orgplane_proto::workspace::v1::{WorkspaceRole, WorkspaceState};
use orgplane_workspace::store::entity::{counter, member as ws_member, workspace};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, TransactionTrait};

use super::*;

/// How much to add: totals the databases hold afterwards.
#[derive(Debug, Clone, Copy)]
pub struct Volume {
    /// Organizations in all.
    pub organizations: usize,
    /// Organization memberships in all.
    pub members: usize,
    /// Direct workspace memberships in all.
    pub workspace_members: usize,
    /// Members of the one big organization among them (ListMembers is measured on it).
    pub big: usize,
}

/// What the databases hold after [`seed_volume`], and how long writing took.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Organizations in all.
    pub organizations: usize,
    /// Organization memberships in all.
    pub members: usize,
    /// Direct workspace memberships in all.
    pub workspace_members: usize,
    /// Time spent writing.
    pub elapsed: Duration,
    /// The big organization and its owner.
    pub big: (String, String),
    /// A small organization (an average one of the volume) and its owner.
    pub small: (String, String),
}

/// A production-shaped id: `prefix_` then 32 hex digits, ordered by `n` (as UUIDv7 ids are by
/// time) and unique per `prefix` and `n`.
fn bulk_id(prefix: &str, n: usize) -> String {
    let mut x = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    format!("{prefix}_019b{:012x}7{:015x}", n as u64, x >> 4)
}

/// One bulk organization: its id, owner and members (owner first).
struct BulkOrg {
    id: String,
    workspace_id: String,
    members: Vec<String>,
}

/// The organizations to add: `orgs` of them sharing `members` memberships of distinct users
/// (the first member of each is its OWNER); the first organization has `big` of them, the others
/// an equal share of the rest.
fn plan_orgs(orgs: usize, members: usize, big: usize) -> Vec<BulkOrg> {
    let orgs = orgs.max(2);
    let big = big.min(members.saturating_sub(orgs - 1)).max(1);
    let (rest, others) = (members.saturating_sub(big), orgs - 1);
    let mut out = Vec::with_capacity(orgs);
    let mut next_user = 0usize;
    for o in 0..orgs {
        let take = if o == 0 {
            big
        } else {
            (rest / others + usize::from(o - 1 < rest % others)).max(1)
        };
        let ids = (next_user..next_user + take)
            .map(|u| bulk_id("user", u))
            .collect();
        next_user += take;
        out.push(BulkOrg {
            id: bulk_id("org", o),
            workspace_id: bulk_id("wrkspc", o),
            members: ids,
        });
    }
    out
}

fn role_at(i: usize) -> OrgRole {
    match i {
        0 => OrgRole::Owner,
        1 => OrgRole::Admin,
        2 => OrgRole::Billing,
        3..=9 => OrgRole::Developer,
        _ => OrgRole::User,
    }
}

/// The database of every service of the stopped rig's `orgplane all`.
fn urls(args: &[String]) -> anyhow::Result<Vec<(Service, String)>> {
    let cli = <Cli as clap::Parser>::try_parse_from(args)?;
    Ok(Service::ALL
        .iter()
        .map(|s| (*s, cli.database_url(*s)))
        .collect())
}

async fn count<E: EntityTrait>(db: &DatabaseConnection) -> anyhow::Result<usize>
where
    E::Model: Sync,
{
    Ok(E::find().count(db).await? as usize)
}

/// Rows per statement (bound parameters stay below SQLite's limit) and per transaction.
const ROWS: usize = 500;
const TXN_ROWS: usize = 50_000;

async fn insert_chunks<A, E>(db: &DatabaseConnection, rows: Vec<A>) -> anyhow::Result<()>
where
    E: EntityTrait,
    A: sea_orm::ActiveModelTrait<Entity = E> + Clone + Send,
{
    for txn_rows in rows.chunks(TXN_ROWS) {
        let txn = db.begin().await?;
        for chunk in txn_rows.chunks(ROWS) {
            E::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
    }
    Ok(())
}

/// The role replica's rows in a consumer's database.
async fn seed_replica(db: &DatabaseConnection, orgs: &[BulkOrg]) -> anyhow::Result<()> {
    let org_rows: Vec<org_row::ActiveModel> = orgs
        .iter()
        .map(|o| {
            org_row::Model {
                organization_id: o.id.clone(),
                name: format!("Bulk {}", &o.id[4..12]),
                primary_email: format!("billing@{}.bench.test", &o.id[4..12]),
                owner_user_id: o.members[0].clone(),
                state: OrganizationState::Active as i32,
            }
            .into()
        })
        .collect();
    insert_chunks(db, org_rows).await?;
    for part in orgs.chunks(1000) {
        let rows: Vec<member_row::ActiveModel> = part
            .iter()
            .flat_map(|o| {
                o.members.iter().enumerate().map(move |(i, u)| {
                    member_row::Model {
                        organization_id: o.id.clone(),
                        user_id: u.clone(),
                        role: role_at(i) as i32,
                    }
                    .into()
                })
            })
            .collect();
        insert_chunks(db, rows).await?;
    }
    Ok(())
}

/// The organization service's rows.
async fn seed_organization(
    db: &DatabaseConnection,
    orgs: &[BulkOrg],
    now: i64,
) -> anyhow::Result<()> {
    let org_rows: Vec<organization::ActiveModel> = orgs
        .iter()
        .map(|o| {
            let name = format!("Bulk {}", &o.id[4..12]);
            organization::Model {
                id: o.id.clone(),
                name_key: name.to_lowercase(),
                name,
                org_type: orgplane_proto::organization::v1::OrganizationType::Company as i32,
                primary_email: format!("billing@{}.bench.test", &o.id[4..12]),
                state: OrganizationState::Active as i32,
                owner_user_id: o.members[0].clone(),
                creator_user_id: o.members[0].clone(),
                create_time_ms: now,
                update_time_ms: now,
                delete_time_ms: None,
                purge_time_ms: None,
                version: 1,
                kind: orgplane_proto::organization::v1::OrganizationKind::Standard as i32,
                operator_id: String::new(),
                merged_into_id: String::new(),
            }
            .into()
        })
        .collect();
    insert_chunks(db, org_rows).await?;
    for part in orgs.chunks(1000) {
        let rows: Vec<org_member::ActiveModel> = part
            .iter()
            .flat_map(|o| {
                o.members.iter().enumerate().map(move |(i, u)| {
                    org_member::Model {
                        organization_id: o.id.clone(),
                        user_id: u.clone(),
                        email: format!("{u}@bench.test"),
                        role: role_at(i) as i32,
                        create_time_ms: now + i as i64,
                        update_time_ms: now,
                        version: 1,
                    }
                    .into()
                })
            })
            .collect();
        insert_chunks(db, rows).await?;
    }
    Ok(())
}

/// The workspace service's rows: one workspace per organization, and `per_workspace[i]` direct
/// roles in the i-th (its first members after the owner).
async fn seed_workspaces(
    db: &DatabaseConnection,
    orgs: &[BulkOrg],
    workspace_members: usize,
    now: i64,
) -> anyhow::Result<()> {
    let ws_rows: Vec<workspace::ActiveModel> = orgs
        .iter()
        .map(|o| {
            workspace::Model {
                id: o.workspace_id.clone(),
                organization_id: o.id.clone(),
                name: "main".into(),
                name_key: "main".into(),
                unit_id: String::new(),
                state: WorkspaceState::Active as i32,
                create_time_ms: now,
                update_time_ms: now,
                archive_time_ms: None,
                version: 1,
            }
            .into()
        })
        .collect();
    insert_chunks(db, ws_rows).await?;
    let counters: Vec<counter::ActiveModel> = orgs
        .iter()
        .map(|o| {
            counter::Model {
                organization_id: o.id.clone(),
                active_count: 1,
            }
            .into()
        })
        .collect();
    insert_chunks(db, counters).await?;
    let n = orgs.len().max(1);
    let rows: Vec<ws_member::ActiveModel> = orgs
        .iter()
        .enumerate()
        .flat_map(|(k, o)| {
            let take = workspace_members / n + usize::from(k < workspace_members % n);
            o.members.iter().skip(1).take(take).map(move |u| {
                ws_member::Model {
                    workspace_id: o.workspace_id.clone(),
                    user_id: u.clone(),
                    organization_id: o.id.clone(),
                    role: WorkspaceRole::User as i32,
                    create_time_ms: now,
                    update_time_ms: now,
                    version: 1,
                }
                .into()
            })
        })
        .collect();
    insert_chunks(db, rows).await?;
    // Bump the state version as every transaction changing memberships does.
    db.execute_unprepared("UPDATE workspace_state_version SET version = version + 1 WHERE id = 1")
        .await?;
    Ok(())
}

/// Adds organizations, members and workspace memberships to the databases of the stopped
/// `orgplane all` described by `args` until they hold `target` (what they hold already counts).
pub async fn seed_volume(args: &[String], target: Volume) -> anyhow::Result<Seeded> {
    let t = Instant::now();
    let mut dbs = Vec::new();
    for (s, url) in urls(args)? {
        dbs.push((s, orgplane_platform::db::connect(&url).await?));
    }
    let db_of = |s: Service| {
        dbs.iter()
            .find(|(x, _)| *x == s)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| anyhow!("no {} database", s.name()))
    };
    let org_db = db_of(Service::Organization)?;
    let ws_db = db_of(Service::Workspace)?;
    let have_orgs = count::<organization::Entity>(&org_db).await?;
    let have_members = count::<org_member::Entity>(&org_db).await?;
    let have_ws = count::<ws_member::Entity>(&ws_db).await?;
    let add_orgs = target.organizations.saturating_sub(have_orgs).max(1);
    let add_members = target.members.saturating_sub(have_members);
    let add_ws = target.workspace_members.saturating_sub(have_ws);
    let orgs = plan_orgs(add_orgs, add_members, target.big);
    let now = chrono::Utc::now().timestamp_millis() - 20_000_000;
    let orgs = &orgs;
    let writes = dbs.iter().map(|(s, db)| async move {
        match s {
            Service::Organization => seed_organization(db, orgs, now).await,
            Service::Workspace => {
                seed_replica(db, orgs).await?;
                seed_workspaces(db, orgs, add_ws, now).await
            }
            Service::Identity | Service::BillingAccess => seed_replica(db, orgs).await,
        }
    });
    for r in futures::future::join_all(writes).await {
        r?;
    }
    let seeded = Seeded {
        organizations: count::<organization::Entity>(&org_db).await?,
        members: count::<org_member::Entity>(&org_db).await?,
        workspace_members: count::<ws_member::Entity>(&ws_db).await?,
        elapsed: t.elapsed(),
        big: (orgs[0].id.clone(), orgs[0].members[0].clone()),
        small: (orgs[1].id.clone(), orgs[1].members[0].clone()),
    };
    for (_, db) in dbs {
        let _ = db.close().await;
    }
    Ok(seeded)
}
