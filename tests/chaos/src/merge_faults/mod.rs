//! Merge under faults (rule ORG-15): a candidate organization with many members, units,
//! workspaces (with direct members, one archived), an account, API keys and usage is merged into
//! a prime while the workspace and billing-access processes — the consumers that move the
//! workspaces, their members, the key replica and the billing data — are killed with SIGKILL
//! around the merge and while they apply it, and restarted ([`faults`]). On SQLite billing-access
//! is dead when the merge commits and the workspace service is killed at a random moment around
//! the call and right after its answer; on PostgreSQL both are killed in the middle of applying
//! the event (their transaction waiting for a lock the scenario holds on the table they move
//! rows of). Then each is killed again while catching up, then at random, some of those times
//! with its cursor moved back before the merge event so that the event is delivered again (at
//! least once to each).
//!
//! Once every consumer caught up, through the public API ([`observe`]): every member, workspace
//! (names unique), direct workspace member, unit and API key of both is in the prime exactly
//! once with its role; the usage report's totals (overall and per workspace) are P's + C's
//! before, and so are the cost report's totals (overall and per account) to the last decimal,
//! added exactly. Then ([`checks`]): C's keys authenticate as keys of the prime and work there;
//! a user of no organization, a former plain member and the former OWNER get NOT_FOUND on every
//! read of C (the former OWNER's GetOrganization names the prime); usage naming C is refused; the
//! consumers' databases hold no row of C, the prime's members once each, and every usage record
//! once (C's re-keyed).
//!
//! The control arm shows that these checks can fail: the same comparison run on the prime as
//! it was before the merge finds C's items missing; run on the observed state with one
//! workspace and one member listed twice it finds two duplicates; run against totals that count
//! C's usage twice it finds the usage and cost wrong.

pub mod checks;
pub mod faults;
pub mod observe;
pub mod seed;

use std::path::Path;
use std::time::Instant;

use crate::Figures;
use crate::harness::Harness;
use observe::{Observed, verify};

/// How big the merge scenario is.
#[derive(Debug, Clone, Copy)]
pub struct MergeSize {
    /// Members of the candidate besides its OWNER (and the members of both).
    pub members: usize,
    /// Workspaces of the candidate (the last one archived).
    pub workspaces: usize,
    /// Direct members added to each workspace.
    pub direct_members: usize,
    /// Workspace API keys of the candidate (besides its admin key).
    pub workspace_keys: usize,
    /// Usage records of each organization.
    pub usage_records: usize,
    /// Random kill cycles after the merge.
    pub kill_cycles: usize,
    /// Upper bound of the random pauses between kills, in milliseconds.
    pub jitter_ms: u64,
}

/// The environment variable that selects the size of the test variants: `full` for the size of
/// the issue (1,000 members, 50 workspaces), anything else or unset for the fast one.
pub const SIZE_VAR: &str = "ORGPLANE_CHAOS_MERGE_SIZE";

impl MergeSize {
    /// The size the issue asks for: 1,000 members and 50 workspaces.
    pub fn full() -> Self {
        MergeSize {
            members: 1000,
            workspaces: 50,
            direct_members: 8,
            workspace_keys: 10,
            usage_records: 5000,
            kill_cycles: 10,
            jitter_ms: 400,
        }
    }

    /// The CI size.
    pub fn fast() -> Self {
        MergeSize {
            members: 200,
            workspaces: 10,
            direct_members: 4,
            workspace_keys: 3,
            usage_records: 1000,
            kill_cycles: 4,
            jitter_ms: 250,
        }
    }

    /// [`MergeSize::full`] when [`SIZE_VAR`] is `full`, else [`MergeSize::fast`].
    pub fn from_env() -> Self {
        match std::env::var(SIZE_VAR).as_deref() {
            Ok("full") => Self::full(),
            _ => Self::fast(),
        }
    }
}

/// Runs the scenario on a fresh setup: the figures of the merge and of the control arm.
pub async fn run(
    bin: &Path,
    postgres: Option<&str>,
    size: MergeSize,
) -> anyhow::Result<Vec<Figures>> {
    let db = crate::db_label(postgres);
    let mut h = Harness::start(bin, postgres).await?;
    let result = scenario(&mut h, db, size).await;
    h.stop().await?;
    result
}

async fn scenario(h: &mut Harness, db: &str, size: MergeSize) -> anyhow::Result<Vec<Figures>> {
    let t = Instant::now();
    let s = seed::seed(h, &size).await?;
    let seeding = t.elapsed();
    let p_before = observe::collect(h, &s.prime, &s.owner).await?;
    let c_before = observe::collect(h, &s.candidate, &s.owner).await?;
    let expected = Observed::merged(&p_before, &c_before, &s.owner);

    let mut f = Figures::new("merge-kill9-consumers", db);
    f.operations = (s.c_members.len()
        + c_before.workspaces.len()
        + c_before.units.len()
        + c_before.keys.len()) as u64
        + c_before.usage.records as u64;
    // The seeding itself must have produced what the scenario is about.
    let seeded_ok = c_before.members.len() == s.c_members.len() + 1
        && c_before.workspaces.len() == size.workspaces
        && c_before.usage.records == s.records.1 as i64
        && p_before.usage.records == s.records.0 as i64
        && c_before.cost != observe::Dec::default();
    if !seeded_ok {
        anyhow::bail!(
            "seeding: C has {} members, {} workspaces, {} records (accepted {}); P {} records \
             (accepted {}); C costs {}",
            c_before.members.len(),
            c_before.workspaces.len(),
            c_before.usage.records,
            s.records.1,
            p_before.usage.records,
            s.records.0,
            c_before.cost
        );
    }

    let chaos = faults::run(h, &s, &size).await?;
    f.crashes = h.kills;
    f.duplicated = chaos.redelivered;
    f.delivered = chaos.before_apply + chaos.after_apply;

    let after = observe::collect(h, &s.prime, &s.owner).await?;
    let v = verify(&expected, &after);
    f.lost += v.missing;
    f.applied_twice += v.duplicated;
    f.failures.extend(v.wrong.iter().cloned());
    if chaos.merged.plan.as_ref().map_or(0, |p| p.members.len()) != s.c_members.len() + 1 {
        f.failures.push(format!(
            "the plan moves {} members, not {}",
            chaos.merged.plan.as_ref().map_or(0, |p| p.members.len()),
            s.c_members.len() + 1
        ));
    }
    checks::keys(h, &s, expected.workspaces.len(), &mut f).await?;
    checks::leaks(h, &s, &mut f).await?;
    checks::databases(
        h,
        &s,
        &after.members,
        (p_before.usage.records, c_before.usage.records),
        &mut f,
    )
    .await?;
    let mid_expected = if h.pg.is_some() { 2 } else { 0 };
    if chaos.before_apply == 0
        || chaos.after_apply == 0
        || chaos.redelivered == 0
        || chaos.mid_apply < mid_expected
    {
        f.failures.push(format!(
            "the faults missed a moment: {} kills before the event was applied ({} mid-apply), \
             {} after, {} redeliveries",
            chaos.before_apply, chaos.mid_apply, chaos.after_apply, chaos.redelivered
        ));
    }
    f.notes = format!(
        "C: {} members, {} workspaces, {} units, {} keys, {} records; merge called {}x at rev {}; \
         kills {} before ({} mid-apply) / {} after apply, {} redelivered; settled {:.1}s after the answer; \
         cost {} + {} = {}; seeding {:.1}s; {}",
        c_before.members.len(),
        c_before.workspaces.len(),
        c_before.units.len(),
        c_before.keys.len(),
        c_before.usage.records,
        chaos.merge_calls,
        chaos.merged.revision,
        chaos.before_apply,
        chaos.mid_apply,
        chaos.after_apply,
        chaos.redelivered,
        chaos.settle.as_secs_f64(),
        p_before.cost,
        c_before.cost,
        after.cost,
        seeding.as_secs_f64(),
        f.notes
    );

    Ok(vec![
        f,
        control(db, &expected, &p_before, &c_before, &after),
    ])
}

/// The control arm (module documentation): each case passes when the comparison finds what is
/// wrong with a state known to be wrong.
fn control(
    db: &str,
    expected: &Observed,
    p_before: &Observed,
    c_before: &Observed,
    after: &Observed,
) -> Figures {
    let mut f = Figures::new("merge-control", db);
    let mut case = |name: &str, found: bool, what: String| {
        f.operations += 1;
        if found {
            f.attacks_passed += 1;
        } else {
            f.attacks_failed += 1;
            f.failures
                .push(format!("control {name} not detected: {what}"));
        }
    };
    // The prime before the merge: everything of C is missing.
    let v = verify(expected, p_before);
    let c_items = (c_before.workspaces.len() + c_before.units.len() + c_before.keys.len()) as u64;
    case(
        "prime before the merge",
        v.missing >= c_items && !v.wrong.is_empty(),
        format!("{v:?}"),
    );
    // One workspace and one member listed twice.
    let mut twice = after.clone();
    if let Some(w) = c_before
        .workspaces
        .first()
        .and_then(|w| twice.workspaces.iter().find(|x| x.id == w.id).cloned())
    {
        twice.workspaces.push(w);
    }
    if let Some(m) = twice.members.last().cloned() {
        twice.members.push(m);
    }
    let v = verify(expected, &twice);
    case(
        "duplicated workspace and member",
        v.duplicated == 2 && v.missing == 0,
        format!("{v:?}"),
    );
    // C's usage counted twice in what is expected.
    let mut doubled = expected.clone();
    doubled.usage.input += c_before.usage.input;
    doubled.usage.output += c_before.usage.output;
    doubled.usage.records += c_before.usage.records;
    doubled.cost = doubled.cost.plus(c_before.cost);
    let v = verify(&doubled, after);
    let usage = v.wrong.iter().any(|w| w.starts_with("usage "));
    let cost = v.wrong.iter().any(|w| w.starts_with("cost total"));
    case(
        "C's usage counted twice",
        usage && cost,
        format!("{:?}", v.wrong),
    );
    f.notes = format!(
        "{} of {} wrong states detected",
        f.attacks_passed, f.operations
    );
    f
}
