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

/// Runs the `orgplane all` code (this binary's `exec-orgplane`) as a child process on `args`,
/// and returns (exec → SERVING, RSS after `settle`) and the child.
pub async fn exec_orgplane(args: &[String], settle: Duration) -> anyhow::Result<(Duration, u64)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
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
