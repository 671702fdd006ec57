//! The `orgplane all` child process: start to SERVING, and resident memory.

use super::*;

/// The process's resident set size, in KiB.
pub fn rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time this process (every thread) has used, user and system, from `/proc/self/stat`, in
/// seconds (Linux's USER_HZ, 100 ticks a second). Work per operation measured with it moves far
/// less with other load on the machine than a rate does.
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces): state is field 3, utime 14,
            // stime 15.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
            Some((ticks(14)? + ticks(15)?) as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// Runs the `orgplane all` code (this binary's `exec-orgplane`) as a child process on `args`,
/// and returns (exec → SERVING, RSS after `settle`) and the child.
pub async fn exec_orgplane(args: &[String], settle: Duration) -> anyhow::Result<(Duration, u64)> {
    let port = orgplane_platform::testkit::reserved_ports(1)[0];
    let exe = std::env::current_exe()?;
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .arg("exec-orgplane")
        .args(&args[1..])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning orgplane")?;
    let url = format!("http://127.0.0.1:{port}");
    let channel = loop {
        if let Ok(ch) = connect(&url, 1).await {
            break ch.into_iter().next().ok_or_else(|| anyhow!("no channel"))?;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            return Err(anyhow!("orgplane did not listen"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    crate::rig::wait_serving(channel, Duration::from_secs(300)).await?;
    let startup = t0.elapsed();
    tokio::time::sleep(settle).await;
    let rss = rss_kib(child.id());
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok((startup, rss))
}

/// What the loaded run is compared with: the unloaded check_access ratio of the same run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unloaded {
    /// check_access's median ratio to the echo before the volume was added, when it ran.
    pub check_access: Option<f64>,
}

/// Issue 23 item 4 on the run's data plus the membership volume ([`super::seed_volume`], written
/// into the stopped rig's databases): `orgplane all` as a child process — exec to SERVING and
/// RSS after `settle` — then, on the same data in this process as every throughput scenario
/// runs, check_access (ratio to the echo, paired) and ListMembers first/middle/last pages of the
/// volume's big organization against an average one. Returns the row and the world on the
/// restarted rig (stopped by the caller).
pub async fn startup_loaded(
    world: World,
    plan: &Plan,
    unloaded: Unloaded,
    settle: Duration,
) -> anyhow::Result<(Row, World)> {
    let World {
        mut rig,
        owner,
        org,
        workspaces,
        users,
        org_revision,
    } = world;
    rig.stop().await;
    let args = crate::rig::orgplane_args(rig.dir.path(), rig.pg.as_ref());
    let seeded = super::seed_volume(&args, plan.volume).await?;
    eprintln!(
        "volume written in {:.1}s: {} organizations, {} members, {} workspace memberships",
        seeded.elapsed.as_secs_f64(),
        seeded.organizations,
        seeded.members,
        seeded.workspace_members
    );
    let (start, rss) = exec_orgplane(&args, settle).await?;
    let (dir, pg) = rig.into_data();
    let t = Instant::now();
    let rig = Rig::start_in(dir, pg, plan.connections).await?;
    let in_process_start = t.elapsed();
    let world = World {
        rig,
        owner,
        org,
        workspaces,
        users,
        org_revision,
    };
    let check = super::check_access(&world, plan).await?;
    let (big, big_owner) = &seeded.big;
    let (small, small_owner) = &seeded.small;
    let b = super::members::page_latencies(
        &world.rig,
        &world.rig.user_token(big_owner)?,
        big,
        plan.page_samples,
    )
    .await?;
    let s = super::members::page_latencies(
        &world.rig,
        &world.rig.user_token(small_owner)?,
        small,
        plan.page_samples,
    )
    .await?;
    let p50 = |x: &Stats| x.quantile_us(0.5);
    let last_first = p50(&b[2]) as f64 / p50(&b[0]).max(1) as f64;
    let mib = rss as f64 / 1024.0;
    let start_ms = start.as_secs_f64() * 1000.0;
    let check_goal = unloaded.check_access.map(|u| 0.9 * u).unwrap_or(0.60);
    let met = mib <= 1024.0 && start_ms <= 5000.0 && check.ratio >= check_goal && last_first <= 1.5;
    let (lo, hi, _) = check.spread.unwrap_or((check.ratio, check.ratio, 1));
    Ok((
        Row {
            scenario: "startup_and_memory_loaded".into(),
            value: mib,
            unit: "MiB RSS".into(),
            baseline: 1024.0,
            ratio: mib / 1024.0,
            p50_us: p50(&b[2]),
            p99_us: b[2].quantile_us(0.99),
            goal: format!(
                "RSS <= 1 GiB, exec -> SERVING <= 5 s, check_access ratio >= {check_goal:.2} (0.9x unloaded), ListMembers last/first <= 1.5"
            ),
            met: Some(met),
            note: format!(
                "{} organizations, {} members, {} workspace memberships (volume written set-wise in {:.0}s); exec -> SERVING {:.0}ms, RSS {:.0} MiB; in-process start {:.0}ms; check_access {:.0} req/s, ratio {:.2} ({:.2}..{:.2}) vs unloaded {}; ListMembers of {} members p50 first/middle/last {}/{}/{}us (last/first {:.2}), {}-member org {}/{}/{}us",
                seeded.organizations,
                seeded.members,
                seeded.workspace_members,
                seeded.elapsed.as_secs_f64(),
                start_ms,
                mib,
                in_process_start.as_secs_f64() * 1000.0,
                check.value,
                check.ratio,
                lo,
                hi,
                unloaded
                    .check_access
                    .map(|u| format!("{u:.2}"))
                    .unwrap_or_else(|| "not run".into()),
                plan.volume.big,
                p50(&b[0]),
                p50(&b[1]),
                p50(&b[2]),
                last_first,
                plan.volume.members.saturating_sub(plan.volume.big)
                    / plan.volume.organizations.max(2).saturating_sub(1),
                p50(&s[0]),
                p50(&s[1]),
                p50(&s[2]),
            ),
            spread: None,
        },
        world,
    ))
}
