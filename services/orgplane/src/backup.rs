//! `orgplane backup --to DIR`: an online copy of the four SQLite databases, restorable together;
//! and `orgplane reconcile-cursors`, the same cursor check on restored databases (PostgreSQL).
//!
//! Each database is copied by `VACUUM INTO` ([`orgplane_platform::backup::copy_sqlite`]) while
//! the services run; the copies are taken one after another, so a consumer copied after its
//! producer may hold a cursor ahead of the producer's copied outbox. The copies are taken in
//! [`ORDER`] (consumers before their producers wherever the cycles allow) so that this is rare,
//! and then checked: every cursor ahead of its producer is replaced by a re-sync request
//! ([`orgplane_platform::events::restore`]). A `manifest.json` records what was copied and found.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use orgplane_platform::backup::{copy_sqlite, open_file};
use orgplane_platform::events::outbox::read_head;
use orgplane_platform::events::restore::{CursorCheck, NamedDatabase, Verdict, check_cursors};
use serde::Serialize;

use crate::cli::{Cli, Service};

/// The order databases are copied in. A consumer copied before its producer cannot be ahead of
/// it. Billing-access only consumes; identity ↔ organization and organization ↔ workspace
/// consume each other, so two edges must go the other way: organization's cursor on workspace
/// and identity's cursor on organization, the two streams with the fewest events. Those are
/// the cursors the check may have to reset.
pub const ORDER: [Service; 4] = [
    Service::BillingAccess,
    Service::Workspace,
    Service::Organization,
    Service::Identity,
];

/// The manifest's file name inside the backup directory.
pub const MANIFEST: &str = "manifest.json";

/// One copied database.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    /// The service.
    pub service: &'static str,
    /// The copy's file name inside the backup directory (`<service>.db`).
    pub file: String,
    /// When the copy was taken (RFC 3339).
    pub copied_at: String,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// One cursor as found in the copies.
#[derive(Debug, Clone, Serialize)]
pub struct CursorEntry {
    /// The consuming service.
    pub consumer: String,
    /// The producer it follows.
    pub producer: String,
    /// The cursor as copied.
    pub cursor: i64,
    /// The producer's head in its copy.
    pub producer_head: Option<i64>,
    /// `in_step`, `resync_requested`, `ahead_left`, `already_requested`, `producer_unknown`.
    pub verdict: &'static str,
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The orgplane version that took the backup.
    pub orgplane_version: &'static str,
    /// The databases, in the order they were copied.
    pub databases: Vec<Copied>,
    /// The file name of the copied signing-key encryption key (identity's key file, when the key
    /// is not configured directly); restore it where identity looks for it.
    pub signing_key_file: Option<String>,
    /// Each producer's outbox head in its copy.
    pub heads: Vec<(String, i64)>,
    /// Every consumer cursor and what was done with it.
    pub cursors: Vec<CursorEntry>,
    /// The cursors replaced by a re-sync request (`consumer<-producer`).
    pub resync_requested: Vec<String>,
}

/// How a backup is taken; the default is the one `orgplane backup` uses.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Request a re-sync for cursors ahead of their producer. Off only in the tests' control
    /// arm, which shows what a restore of unchecked copies loses.
    pub fix_cursors: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { fix_cursors: true }
    }
}

/// Takes a backup of every service's database into the new or empty directory `to`.
pub async fn backup(cli: &Cli, to: &Path, options: Options) -> anyhow::Result<Manifest> {
    let urls: Vec<(Service, String)> = ORDER.iter().map(|&s| (s, cli.database_url(s))).collect();
    for (s, url) in &urls {
        if !orgplane_platform::db::is_sqlite(url) {
            bail!(
                "the {} database is not SQLite ({}): back PostgreSQL up with its own tools — \
                 see \"Backup and restore\" in k8s/README.md (CloudNativePG) — and run \
                 `orgplane reconcile-cursors` on the restored databases before starting",
                s.name(),
                orgplane_platform::db::redact(url)
            );
        }
    }
    prepare(to)?;
    let mut copied = Vec::new();
    for (s, _) in &urls {
        copied.push(copy(cli, *s, to).await?);
    }
    let key = copy_signing_key(cli, to)?;
    let mut manifest = finish(to, copied, options).await?;
    if key.is_some() {
        manifest.signing_key_file = key;
        write_manifest(to, &manifest)?;
    }
    Ok(manifest)
}

/// Copies identity's signing-key encryption key file into `to` when identity keeps its key in a
/// file: without it the restored identity database cannot open its signing keys.
pub fn copy_signing_key(cli: &Cli, to: &Path) -> anyhow::Result<Option<String>> {
    if cli.identity.has_encryption_key() {
        return Ok(None);
    }
    let from = cli
        .identity
        .encryption_key_file(&cli.database_url(Service::Identity));
    let Some(name) = from.file_name() else {
        return Ok(None);
    };
    if !from.is_file() {
        return Ok(None);
    }
    let dest = to.join(name);
    std::fs::copy(&from, &dest).with_context(|| format!("copying {}", from.display()))?;
    Ok(Some(name.to_string_lossy().into_owned()))
}

/// Creates `to`, or accepts it when it exists and is empty.
pub fn prepare(to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        let mut entries = std::fs::read_dir(to)
            .with_context(|| format!("reading the backup directory {}", to.display()))?;
        if entries.next().is_some() {
            bail!(
                "the backup directory {} is not empty: give a new or empty directory",
                to.display()
            );
        }
    }
    std::fs::create_dir_all(to)
        .with_context(|| format!("creating the backup directory {}", to.display()))
}

/// Copies `service`'s live database into `to` (one step of [`backup`]).
pub async fn copy(cli: &Cli, service: Service, to: &Path) -> anyhow::Result<Copied> {
    let file = format!("{}.db", service.name());
    let path = to.join(&file);
    copy_sqlite(&cli.database_url(service), &path)
        .await
        .with_context(|| format!("copying the {} database", service.name()))?;
    let bytes = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(Copied {
        service: service.name(),
        file,
        copied_at: chrono::Utc::now().to_rfc3339(),
        bytes,
    })
}

/// Checks the cursors of the copies in `to` against their producers' copied heads (requesting
/// re-syncs as `options` say) and writes the manifest (the last step of [`backup`]).
pub async fn finish(to: &Path, copied: Vec<Copied>, options: Options) -> anyhow::Result<Manifest> {
    let mut dbs = Vec::new();
    for c in &copied {
        let path: PathBuf = to.join(&c.file);
        let path = path
            .to_str()
            .context("the backup directory is not a UTF-8 path")?;
        let db = open_file(path, "rw")
            .await
            .with_context(|| format!("opening the copy {path}"))?;
        dbs.push((c.service, db));
    }
    let named: Vec<NamedDatabase<'_>> = dbs
        .iter()
        .map(|(service, db)| NamedDatabase { service, db })
        .collect();
    let checks = check_cursors(&named, options.fix_cursors)
        .await
        .context("checking the copies' cursors")?;
    let mut heads = Vec::new();
    for d in &named {
        if d.service != Service::BillingAccess.name() {
            let head = read_head(d.db).await.context("reading an outbox head")?;
            heads.push((d.service.to_owned(), head.revision));
        }
    }
    for (_, db) in dbs {
        db.close().await.context("closing a copy")?;
    }
    let manifest = Manifest {
        orgplane_version: env!("CARGO_PKG_VERSION"),
        databases: copied,
        signing_key_file: None,
        heads,
        resync_requested: resets(&checks),
        cursors: checks.iter().map(entry).collect(),
    };
    write_manifest(to, &manifest)?;
    Ok(manifest)
}

fn write_manifest(to: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(manifest).context("writing the manifest")?;
    std::fs::write(to.join(MANIFEST), json + "\n").context("writing the manifest")
}

/// `orgplane reconcile-cursors`: the cursor check of [`finish`] on the configured databases
/// themselves, for databases restored separately (PostgreSQL point-in-time recovery), before the
/// services start. Returns the checks.
pub async fn reconcile(cli: &Cli) -> anyhow::Result<Vec<CursorCheck>> {
    let mut dbs = Vec::new();
    for s in Service::ALL {
        let url = cli.database_url(s);
        let db = orgplane_platform::db::connect(&url)
            .await
            .with_context(|| format!("connecting to the {} database", s.name()))?;
        dbs.push((s.name(), db));
    }
    let named: Vec<NamedDatabase<'_>> = dbs
        .iter()
        .map(|(service, db)| NamedDatabase { service, db })
        .collect();
    let checks = check_cursors(&named, true)
        .await
        .context("checking the cursors")?;
    for (_, db) in dbs {
        let _ = db.close().await;
    }
    Ok(checks)
}

/// The `consumer<-producer` names of the cursors replaced by a re-sync request.
pub fn resets(checks: &[CursorCheck]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.verdict == Verdict::ResyncRequested)
        .map(|c| format!("{}<-{}", c.consumer, c.producer))
        .collect()
}

fn entry(c: &CursorCheck) -> CursorEntry {
    CursorEntry {
        consumer: c.consumer.clone(),
        producer: c.producer.clone(),
        cursor: c.cursor,
        producer_head: c.producer_head,
        verdict: match c.verdict {
            Verdict::InStep => "in_step",
            Verdict::ResyncRequested => "resync_requested",
            Verdict::AheadLeft => "ahead_left",
            Verdict::AlreadyRequested => "already_requested",
            Verdict::ProducerUnknown => "producer_unknown",
        },
    }
}
