//! `orgplane backup` (issue 20, "Backups"): online copies of the four SQLite databases while
//! roles change, restored into a fresh data directory and started. Every consumer resumes from
//! its cursor, or re-syncs when its cursor was ahead of its producer's copy, so that no event is
//! lost or applied twice: each replica of the organization's members equals the members, and
//! changes made after the restore reach every service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "backup/system.rs"]
mod system;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orgplane::Service;
use orgplane::backup::{Options, backup, copy, copy_signing_key, finish, prepare};
use orgplane_proto::organization::v1::OrgRole;
use system::{Gate, System, restore};

/// How a restored copy is started in the cursor-ahead test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    /// Cursors checked at backup time (or by `reconcile-cursors`): started as usual.
    Checked,
    /// Unchecked; the consumers connect before the organization's next change.
    ConsumersFirst,
    /// Unchecked; the organization makes its next change before the consumers connect.
    OrganizationFirst,
}

fn arm_name(dir: &std::path::Path, arm: Arm) -> String {
    format!(
        "{}-{arm:?}",
        dir.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// The replicas of the organization's members all equal the members, and the billing service's
/// workspaces equal the workspace service's.
async fn assert_replicas_in_step(sys: &System) {
    let members = sys.members().await;
    for s in [
        Service::Workspace,
        Service::BillingAccess,
        Service::Identity,
    ] {
        assert_eq!(
            sys.replica(s).await,
            members,
            "{}'s replica of the members",
            s.name()
        );
    }
    let workspaces = sys
        .rows(
            Service::Workspace,
            "SELECT id, organization_id FROM workspaces ORDER BY 1",
        )
        .await;
    let billed = sys
        .rows(
            Service::BillingAccess,
            "SELECT workspace_id, organization_id FROM billing_workspaces ORDER BY 1",
        )
        .await;
    assert_eq!(billed, workspaces, "billing-access's workspaces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_taken_during_role_changes_restores_with_every_consumer_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let sys = Arc::new(System::start(&dir.path().join("live")).await);
    let owner = "user_owner";
    let org = sys.create_org(owner).await;
    sys.wait_in_step().await;

    // The stream: members added, roles changed, workspaces created with a workspace role.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let driver = {
        let (sys, org, stop, done) = (sys.clone(), org.clone(), stop.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let user = format!("user_p{i}");
                sys.seed_user(&user).await;
                let revision = sys.provision(&org, &user, OrgRole::Developer).await;
                if i > 0 {
                    let role = [OrgRole::Admin, OrgRole::User, OrgRole::Billing][i % 3];
                    sys.update_role(owner, &org, &format!("user_p{}", i - 1), role)
                        .await;
                }
                if i % 4 == 0 {
                    sys.create_workspace(owner, &org, &format!("ws-{i}"), &user, revision)
                        .await;
                }
                done.store(i + 1, Ordering::Relaxed);
            }
        })
    };
    while done.load(Ordering::Relaxed) < 8 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let backup_dir = dir.path().join("backup");
    let (before, started) = (done.load(Ordering::Relaxed), Instant::now());
    let manifest = backup(&sys.cli, &backup_dir, Options::default())
        .await
        .unwrap();
    let (after, took) = (done.load(Ordering::Relaxed), started.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    driver.await.unwrap();
    println!(
        "backup took {took:?}; changes {before}..{after} during it, {} in all; re-syncs \
         requested: {:?}",
        done.load(Ordering::Relaxed),
        manifest.resync_requested
    );
    assert!(
        done.load(Ordering::Relaxed) > after,
        "the stream went on after the backup"
    );

    // The manifest names what was copied, in order, and every cursor was judged.
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(backup_dir.join(orgplane::backup::MANIFEST)).unwrap(),
    )
    .unwrap();
    let order: Vec<&str> = written["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["billing-access", "workspace", "organization", "identity"]
    );
    assert!(written["databases"][0]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(written["signing_key_file"], "identity-signing.key");
    let cursors = written["cursors"].as_array().unwrap();
    assert!(cursors.len() >= 5, "{cursors:?}");
    for c in cursors {
        let ahead = c["cursor"].as_i64() > c["producer_head"].as_i64();
        let verdict = c["verdict"].as_str().unwrap();
        assert_eq!(verdict == "resync_requested", ahead, "{c}");
        assert!(matches!(verdict, "in_step" | "resync_requested"), "{c}");
    }

    // A second backup into the same directory is refused; so is a PostgreSQL database.
    let err = backup(&sys.cli, &backup_dir, Options::default())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("is not empty"), "{err:#}");
    let mut pg = system::cli(&sys.data_dir);
    pg.organization_database_url = Some("postgres://app:secret@db:5432/organization".into());
    let err = backup(&pg, &dir.path().join("pg"), Options::default())
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("is not SQLite") && message.contains("k8s/README.md"),
        "{message}"
    );
    assert!(
        !message.contains("secret"),
        "the password is redacted: {message}"
    );

    sys.wait_in_step().await;
    let live_members = sys.members().await;
    Arc::try_unwrap(sys).ok().unwrap().stop().await;

    // Restore: the copies into a fresh data directory, then start.
    let restored_dir = dir.path().join("restored");
    restore(&backup_dir, &restored_dir);
    let sys = System::start(&restored_dir).await;
    sys.wait_in_step().await;
    assert_replicas_in_step(&sys).await;
    let restored = sys.members().await;
    assert!(restored.len() > before && restored.len() <= live_members.len());

    // Changes after the restore reach every service.
    sys.seed_user("user_after").await;
    let revision = sys.provision(&org, "user_after", OrgRole::Developer).await;
    assert!(sys.can_read(&org, "user_after", revision).await);
    sys.update_role(owner, &org, "user_p0", OrgRole::Admin)
        .await;
    sys.create_workspace(owner, &org, "ws-after", "user_after", revision)
        .await;
    sys.wait_in_step().await;
    assert_replicas_in_step(&sys).await;
    sys.stop().await;
}

/// Copies taken in the worst order: the organization first, then a member added and applied by
/// every consumer, then the consumers. Their cursors on the organization are one ahead of its
/// copied head. With the check (what `orgplane backup` does) they re-sync on start and the
/// restore is exact. Without it the restore is exact only if each consumer connects before the
/// organization's next change (the Watch server refuses its cursor, CURSOR_AHEAD, and it
/// re-syncs). Control: when the organization changes first, it issues the lost revision again,
/// every consumer skips it as already applied, and the member the organization lost stays in
/// their replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_control_a_cursor_ahead_of_its_producer_loses_events_unless_reset() {
    let dir = tempfile::tempdir().unwrap();
    let sys = System::start(&dir.path().join("live")).await;
    let owner = "user_owner";
    let org = sys.create_org(owner).await;
    for u in ["user_a", "user_z"] {
        sys.seed_user(u).await;
    }
    sys.provision(&org, "user_a", OrgRole::Developer).await;
    sys.wait_in_step().await;

    let (fixed, raw) = (dir.path().join("fixed"), dir.path().join("raw"));
    prepare(&fixed).unwrap();
    let mut copied = vec![copy(&sys.cli, Service::Organization, &fixed).await.unwrap()];
    let lost = sys.provision(&org, "user_z", OrgRole::Developer).await;
    sys.wait_in_step().await;
    for s in [
        Service::Workspace,
        Service::BillingAccess,
        Service::Identity,
    ] {
        copied.push(copy(&sys.cli, s, &fixed).await.unwrap());
    }
    copy_signing_key(&sys.cli, &fixed).unwrap();
    restore(&fixed, &raw);
    let checked = finish(&fixed, copied.clone(), Options { fix_cursors: true })
        .await
        .unwrap();
    let unchecked = finish(&raw, copied, Options { fix_cursors: false })
        .await
        .unwrap();
    sys.stop().await;
    let mut reset = checked.resync_requested.clone();
    reset.sort();
    assert_eq!(
        reset,
        [
            "billing-access<-organization",
            "identity<-organization",
            "workspace<-organization"
        ]
    );
    assert!(unchecked.resync_requested.is_empty());
    assert_eq!(
        unchecked
            .cursors
            .iter()
            .filter(|c| c.verdict == "ahead_left")
            .count(),
        3
    );

    // `orgplane reconcile-cursors` on a restore of the unchecked copies finds the same cursors.
    let reconciled = dir.path().join("reconciled");
    restore(&raw, &reconciled);
    let checks = orgplane::backup::reconcile(&system::cli(&reconciled))
        .await
        .unwrap();
    let mut found = orgplane::backup::resets(&checks);
    found.sort();
    assert_eq!(found, reset);

    // Started as they are, the unchecked copies heal only when the consumers connect before the
    // organization issues the lost revision again (the Watch server answers their cursor with
    // CURSOR_AHEAD); when the organization is first, nothing tells the two revisions apart.
    for (backup_dir, arm) in [
        (&reconciled, Arm::Checked),
        (&fixed, Arm::Checked),
        (&raw, Arm::ConsumersFirst),
        (&raw, Arm::OrganizationFirst),
    ] {
        let data = dir
            .path()
            .join(format!("started-{}", arm_name(backup_dir, arm)));
        restore(backup_dir, &data);
        let mut gate = Gate::closed();
        let sys = match arm {
            Arm::OrganizationFirst => System::start_with(&data, Some(gate.url())).await,
            _ => System::start(&data).await,
        };
        if arm == Arm::ConsumersFirst {
            // Every consumer has re-synced to the organization's head, one below its cursor.
            sys.wait_in_step().await;
        }
        sys.seed_user("user_w").await;
        let revision = sys.provision(&org, "user_w", OrgRole::Developer).await;
        assert_eq!(
            revision, lost,
            "the organization issues the lost revision again"
        );
        if arm == Arm::OrganizationFirst {
            gate.open(sys.addr()).await;
            // A later change, so that in step means each consumer connected and read past it.
            sys.seed_user("user_v").await;
            sys.provision(&org, "user_v", OrgRole::Developer).await;
        }
        sys.wait_in_step().await;
        let members = sys.members().await;
        assert!(members.iter().any(|m| m[1] == "user_w"));
        assert!(!members.iter().any(|m| m[1] == "user_z"));
        if arm != Arm::OrganizationFirst {
            assert_replicas_in_step(&sys).await;
            assert!(sys.can_read(&org, "user_w", revision).await);
            assert!(!sys.can_read(&org, "user_z", revision).await);
        } else {
            for s in [
                Service::Workspace,
                Service::BillingAccess,
                Service::Identity,
            ] {
                let replica = sys.replica(s).await;
                assert!(
                    replica.iter().any(|m| m[1] == "user_v"),
                    "{} applied the later change",
                    s.name()
                );
                assert!(
                    !replica.iter().any(|m| m[1] == "user_w"),
                    "control: {} skipped the new member's event",
                    s.name()
                );
                assert!(
                    replica.iter().any(|m| m[1] == "user_z"),
                    "control: {} keeps the member the organization lost",
                    s.name()
                );
            }
            assert!(!sys.can_read(&org, "user_w", revision).await);
            assert!(sys.can_read(&org, "user_z", revision).await);
        }
        sys.stop().await;
    }
}
