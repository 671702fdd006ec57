//! Test support: drives the real `orgplane` binary in tests: starts it as a child process on a free loopback
//! port with its own data directory, waits for its banner, and stops it with SIGTERM.

#![allow(dead_code, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod mail;
pub mod people;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `orgplane` binary cargo built for these tests.
pub fn orgplane_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orgplane-e2e-node"))
}

/// A running `orgplane` process.
pub struct Orgplane {
    child: Child,
    /// `http://127.0.0.1:port` (`https://` when it serves TLS).
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Everything it printed to stdout before the banner.
    pub banner: Vec<String>,
}

impl Orgplane {
    /// Starts `orgplane <args>` in `data_dir` on a free port with extra environment `env`.
    pub async fn start(args: &[&str], data_dir: &Path, env: &[(&str, String)]) -> Orgplane {
        let mut cmd = Command::new(orgplane_binary());
        cmd.args(args)
            .current_dir(data_dir)
            .env("ORGPLANE_LISTEN", "127.0.0.1:0")
            .env("ORGPLANE_HTTP_LISTEN", "127.0.0.1:0")
            .env("ORGPLANE_DATA_DIR", data_dir.join("data"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn orgplane: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                banner.push(line.clone());
                if let Some(rest) = line.split(" on ").nth(1)
                    && line.starts_with("orgplane ")
                {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let scheme = if line.contains("TLS") {
                        "https"
                    } else {
                        "http"
                    };
                    return format!("{scheme}://{addr}");
                }
            }
            panic!("orgplane exited before printing its banner: {banner:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("orgplane printed no banner in 30 s"));
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Orgplane {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            banner,
        }
    }

    /// A channel to it.
    pub fn channel(&self) -> tonic::transport::Channel {
        orgplane_platform::testkit::channel(&self.url)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("orgplane did not stop within 15 s of SIGTERM"))
            .unwrap_or_else(|e| panic!("wait: {e}"))
    }
}

/// Waits until `service` reports SERVING on `channel`: up to 60 s, because CI starts several
/// debug-built processes at once on two cores and each fetches service tokens before its
/// streams catch up (readiness itself is asserted by the foundation tests).
pub async fn wait_serving(channel: tonic::transport::Channel, service: &str) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut client = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = client
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            && r.into_inner().status == ServingStatus::Serving as i32
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{service} did not report SERVING within 60 s");
}
