//! The fast variants of the reliability and security scenarios, on SQLite and (when
//! ORGPLANE_TEST_POSTGRES_URL is set) PostgreSQL, against real `orgplane serve` processes. The
//! full-size runs: `cargo run --release -p orgplane-chaos -- all`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use orgplane_chaos::{Figures, Size, attacks, crash, ryw, security};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orgplane-chaos"))
}

fn postgres() -> Option<String> {
    let url = std::env::var("ORGPLANE_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        println!("PostgreSQL: skipped (ORGPLANE_TEST_POSTGRES_URL is not set)");
    }
    url
}

#[track_caller]
fn assert_clean(figures: &[Figures]) {
    print!("{}", Figures::table(figures));
    let violations: usize = figures.iter().map(Figures::violations).sum();
    assert_eq!(violations, 0, "violations:\n{}", Figures::table(figures));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_demote_then_check_never_allows_with_the_revision_sqlite() {
    let figures = ryw::run(&bin(), None, Size::fast()).await.unwrap();
    assert_eq!(figures.len(), 2);
    assert!(figures[1].operations >= 6 * 1000, "at least 1,000 attempts");
    assert_clean(&figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_demote_then_check_never_allows_with_the_revision_postgres() {
    let Some(pg) = postgres() else { return };
    let figures = ryw::run(&bin(), Some(&pg), Size::fast()).await.unwrap();
    assert_clean(&figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kill9_organization_and_consumers_during_role_changes_sqlite() {
    let figures = crash::run(&bin(), None, Size::fast()).await.unwrap();
    assert!(figures[0].crashes > 0 && figures[1].crashes > 0);
    assert!(figures[1].duplicated > 0, "duplicates were delivered");
    assert_clean(&figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kill9_organization_and_consumers_during_role_changes_postgres() {
    let Some(pg) = postgres() else { return };
    let figures = crash::run(&bin(), Some(&pg), Size::fast()).await.unwrap();
    assert!(figures[0].crashes > 0 && figures[1].crashes > 0);
    assert_clean(&figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_cross_tenant_matrix_from_the_protos_refuses_every_role_sqlite() {
    let f = security::run(&bin(), None).await.unwrap();
    assert!(
        f.attacks_passed >= 100,
        "the matrix covers the id-taking RPCs"
    );
    assert_clean(&[f]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_cross_tenant_matrix_from_the_protos_refuses_every_role_postgres() {
    let Some(pg) = postgres() else { return };
    let f = security::run(&bin(), Some(&pg)).await.unwrap();
    assert_clean(&[f]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_protocol_input_login_abuse_and_forged_tokens_are_refused_sqlite() {
    let figures = attacks::run(&bin(), None).await.unwrap();
    assert_eq!(figures.len(), 3);
    assert!(figures.iter().all(|f| f.attacks_passed >= 10));
    assert_clean(&figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_protocol_input_login_abuse_and_forged_tokens_are_refused_postgres() {
    let Some(pg) = postgres() else { return };
    let figures = attacks::run(&bin(), Some(&pg)).await.unwrap();
    assert_clean(&figures);
}
