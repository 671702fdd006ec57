//! The harness of orgctl's end-to-end tests: `orgplane all` in this process on a loopback port,
//! the built `orgctl` binary run with its own configuration file, and the mailed links.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use orgplane::{Cli, Service};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const OLIVIA: &str = "olivia@example.com";
pub const DANA: &str = "dana@example.com";
pub const OLIVIA_PASSWORD: &str = "correct horse battery staple";
pub const DANA_PASSWORD: &str = "another long passphrase";

/// `orgplane all` on a loopback port, in a thread with its own runtime.
pub struct Server {
    pub addr: SocketAddr,
    pub scheme: &'static str,
    pub data: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[], "http")
    }

    /// Starts with extra command-line arguments (before `all`); `scheme` is how to reach it.
    pub fn start_with(extra: &[String], scheme: &'static str) -> Server {
        let extra = extra.to_vec();
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut argv = vec![
                    "orgplane".to_owned(),
                    "--data-dir".to_owned(),
                    dir.display().to_string(),
                    "--mail-url".to_owned(),
                    format!("file://{}", dir.join("mail").display()),
                    "--organization-mail-url".to_owned(),
                    format!("file://{}", dir.join("mail").display()),
                    "--http-listen".to_owned(),
                    "off".to_owned(),
                ];
                argv.extend(extra);
                argv.push("all".to_owned());
                let cli = <Cli as clap::Parser>::try_parse_from(argv).unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let shutdown = CancellationToken::new();
                let started = orgplane::start(&cli, &Service::ALL, listener, shutdown.clone())
                    .await
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(30);
                while !started.health.snapshot().iter().all(|(_, ready)| *ready) {
                    assert!(
                        Instant::now() < deadline,
                        "orgplane did not become ready: {:?}",
                        started.health.snapshot()
                    );
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                tx.send((started.addr, shutdown)).unwrap();
                started.wait().await.unwrap();
            });
        });
        let (addr, shutdown) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        Server {
            addr,
            scheme,
            data,
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn mail_dir(&self) -> PathBuf {
        self.data.path().join("mail")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The newest mail to `to` containing `marker`: the link (or word) around it, up to whitespace.
/// Mail is sent after the call answered (from an outbox), so this waits for it a little.
pub fn mailed_value(dir: &Path, to: &str, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut mails: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|e| {
                Some((
                    e.metadata().ok()?.modified().ok()?,
                    std::fs::read_to_string(e.path()).ok()?,
                ))
            })
            .filter(|(_, text)| {
                text.lines()
                    .any(|l| l.starts_with("To: ") && l.contains(to))
            })
            .collect();
        mails.sort_by_key(|(t, _)| *t);
        for (_, text) in mails.iter().rev() {
            if let Some(i) = text.find(marker) {
                let start = text[..i]
                    .rfind(|c: char| c.is_whitespace())
                    .map_or(0, |p| p + 1);
                let rest = &text[start..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '<')
                    .unwrap_or(rest.len());
                return rest[..end].to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no mail to {to} containing {marker:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the orgctl binary with a private configuration file.
pub struct Orgctl {
    pub config: PathBuf,
}

impl Orgctl {
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orgctl"))
            .args(args)
            .env("ORGCTL_CONFIG", &self.config)
            .env_remove("ORGCTL_CONTEXT")
            .env_remove("ORGCTL_ORG")
            .env_remove("ORGCTL_OUTPUT")
            .env_remove("ORGCTL_MIN_ORG_REVISION")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "orgctl {args:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command with `-o json` that must succeed; returns its output parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all, None);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Runs a command that must fail with `code`; returns its standard error.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>, code: i32) -> String {
        let out = self.run(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "orgctl {args:?}: stdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }
}

/// Enrolls an authenticator app for `email` over gRPC (orgctl has no enrollment command) and
/// returns the recovery codes.
pub fn enroll_totp(server: &Server, email: &str, password: &str) -> Vec<String> {
    use orgplane_proto::identity::v1::identity_service_client::IdentityServiceClient;
    use orgplane_proto::identity::v1::{
        ConfirmTotpEnrollmentRequest, LoginRequest, StartTotpEnrollmentRequest,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = IdentityServiceClient::connect(server.url()).await.unwrap();
        let tokens = client
            .login(LoginRequest {
                email: email.into(),
                password: password.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .tokens
            .unwrap();
        fn bearer<T>(token: &str, m: T) -> tonic::Request<T> {
            let mut r = tonic::Request::new(m);
            r.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            r
        }
        let token = tokens.access_token.as_str();
        let started = client
            .start_totp_enrollment(bearer(
                token,
                StartTotpEnrollmentRequest {
                    display_name: "Phone".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let secret = totp_rs::Secret::try_from_base32(&started.secret).unwrap();
        let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let code = format!("{:0>6}", totp.generate(now).to_string());
        client
            .confirm_totp_enrollment(bearer(
                token,
                ConfirmTotpEnrollmentRequest {
                    factor_id: started.factor.unwrap().id,
                    code,
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .recovery_codes
    })
}

#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
