//! orgctl end to end: the built `orgctl` binary against a real `orgplane all` (the four services
//! in this test process, on a loopback port chosen by the OS), driving the README's story with
//! nothing but orgctl commands: contexts, sign-up, the mailed verification link, sign-in with
//! the password on standard input, an organization, an invite accepted by a second person,
//! roles, a workspace, an access check, API keys, the audit trail (listed and followed), the
//! billing reports, JSON output, error reasons with hints and exit codes, session refresh, and
//! the configuration file's permissions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use orgplane::{Cli, Service};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const OLIVIA: &str = "olivia@example.com";
const DANA: &str = "dana@example.com";
const OLIVIA_PASSWORD: &str = "correct horse battery staple";
const DANA_PASSWORD: &str = "another long passphrase";

/// `orgplane all` on a loopback port, in a thread with its own runtime.
struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    data: tempfile::TempDir,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[], "http")
    }

    /// Starts with extra command-line arguments (before `all`); `scheme` is how to reach it.
    fn start_with(extra: &[String], scheme: &'static str) -> Server {
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

    fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    fn mail_dir(&self) -> PathBuf {
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
fn mailed_value(dir: &Path, to: &str, marker: &str) -> String {
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
struct Orgctl {
    config: PathBuf,
}

impl Orgctl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
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
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
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
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all, None);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Runs a command that must fail with `code`; returns its standard error.
    fn fails(&self, args: &[&str], stdin: Option<&str>, code: i32) -> String {
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
fn enroll_totp(server: &Server, email: &str, password: &str) -> Vec<String> {
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
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_readme_story_with_orgctl() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let ctl = Orgctl {
        config: home.path().join("cfg").join("orgctl").join("config.toml"),
    };
    let url = server.url();
    let mail = server.mail_dir();

    // Contexts: one per person on the same server; the first becomes current.
    ctl.ok(&["context", "add", "olivia", "--server", &url], None);
    ctl.ok(&["context", "add", "dana", "--server", &url], None);
    ctl.ok(
        &["context", "add", "dead", "--server", "http://127.0.0.1:1"],
        None,
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&ctl.config), 0o600, "the config file is private");
        assert_eq!(
            mode(ctl.config.parent().unwrap()),
            0o700,
            "so is its directory"
        );
    }
    let list = ctl.ok(&["context", "list"], None);
    assert!(
        list.lines()
            .any(|l| l.starts_with('*') && l.contains("olivia")),
        "{list}"
    );
    let contexts = ctl.json(&["context", "list"]);
    assert_eq!(contexts.as_array().unwrap().len(), 3);
    ctl.fails(&["context", "add", "olivia", "--server", &url], None, 2);
    ctl.fails(&["context", "use", "nobody"], None, 3);

    // Sign-up with the password on standard input; a refused sign-up names each bad field.
    let olivia = ctl.ok(
        &[
            "-o",
            "json",
            "signup",
            "--email",
            OLIVIA,
            "--name",
            "Olivia Owner",
            "--password-stdin",
        ],
        Some(&format!("{OLIVIA_PASSWORD}\n")),
    );
    let olivia: Value = serde_json::from_str(&olivia).unwrap();
    assert_eq!(olivia["user"]["email"], OLIVIA);
    assert!(
        olivia["user"].get("emailVerified").is_none(),
        "false is left out: {olivia}"
    );
    let err = ctl.fails(
        &[
            "signup",
            "--email",
            "not-an-address",
            "--name",
            "Nobody",
            "--password-stdin",
        ],
        Some("short\n"),
        1,
    );
    assert!(
        err.contains("reason: INVALID_ARGUMENT") || err.contains("reason: INVALID_FIELD"),
        "{err}"
    );
    assert!(err.contains("invalid field `email`"), "{err}");
    assert!(err.contains("invalid field `password`"), "{err}");
    ctl.ok(
        &[
            "--context",
            "dana",
            "signup",
            "--email",
            DANA,
            "--name",
            "Dana Developer",
            "--account-type",
            "personal",
            "--password-stdin",
        ],
        Some(&format!("{DANA_PASSWORD}\n")),
    );

    // Olivia signs in before verifying: creating an organization is refused, with a hint.
    let login = ctl.ok(
        &["login", OLIVIA, "--password-stdin"],
        Some(&format!("{OLIVIA_PASSWORD}\n")),
    );
    assert!(login.contains(OLIVIA), "{login}");
    let err = ctl.fails(&["org", "create", "Acme"], None, 1);
    assert!(err.contains("reason: EMAIL_NOT_VERIFIED"), "{err}");
    assert!(
        err.contains("hint: verify your address with `orgctl verify-email"),
        "{err}"
    );

    // Both verify with the link from their mail.
    let link = mailed_value(&mail, OLIVIA, "verify-email?token=");
    assert!(link.contains("token="), "{link}");
    ctl.ok(&["verify-email", &link], None);
    let link = mailed_value(&mail, DANA, "verify-email?token=");
    let token = link.split("token=").nth(1).unwrap();
    ctl.ok(&["verify-email", token], None);
    // (Tokens may start with `-`: still a token, not an option.)
    let err = ctl.fails(&["verify-email", "-not-a-token"], None, 1);
    assert!(err.contains("reason: "), "{err}");

    // Dana signs in in her context.
    let dana_login = ctl.ok(
        &[
            "--context",
            "dana",
            "-o",
            "json",
            "login",
            DANA,
            "--password-stdin",
        ],
        Some(&format!("{DANA_PASSWORD}\n")),
    );
    let dana_id = serde_json::from_str::<Value>(&dana_login).unwrap()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let whoami = ctl.json(&["--context", "dana", "whoami"]);
    assert_eq!(whoami["user"]["email"], DANA);

    // Olivia creates the organization and makes it her context's default.
    let created = ctl.json(&["org", "create", "Acme", "--set-default"]);
    let org = created["organization"]["id"].as_str().unwrap().to_owned();
    assert!(created["revision"].as_str().is_some(), "{created}");
    let shown = ctl.ok(&["org", "get"], None);
    assert!(shown.contains("name:") && shown.contains("Acme"), "{shown}");
    let orgs = ctl.json(&["org", "list", "--all"]);
    assert!(
        orgs.as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == org.as_str()),
        "{orgs}"
    );
    let updated = ctl.json(&["org", "update", "--primary-email", "billing@example.com"]);
    assert_eq!(
        updated["organization"]["primaryEmail"],
        "billing@example.com"
    );

    // She invites Dana as a developer; Dana accepts with the link from her mail.
    ctl.ok(
        &[
            "invites",
            "create",
            DANA,
            "--role",
            "developer",
            "--org",
            &org,
        ],
        None,
    );
    let invites = ctl.ok(&["invites", "list"], None);
    assert!(
        invites.contains(DANA) && invites.contains("PENDING"),
        "{invites}"
    );
    let invite_link = mailed_value(&mail, DANA, "/invites/inv_");
    assert!(invite_link.contains("/invites/inv_"), "{invite_link}");
    let accepted = ctl.json(&["--context", "dana", "invites", "accept", &invite_link]);
    let revision = accepted["revision"].as_str().unwrap().to_owned();
    assert_eq!(accepted["member"]["role"], "ORG_ROLE_DEVELOPER");

    // The members with their roles.
    let members = ctl.ok(&["members", "list", "--org", &org], None);
    let dana_line = members
        .lines()
        .find(|l| l.contains(DANA))
        .unwrap_or_else(|| panic!("{members}"));
    assert!(dana_line.contains("DEVELOPER"), "{members}");
    assert!(
        members.lines().next().unwrap().starts_with("USER"),
        "{members}"
    );
    let paged = ctl.json(&["members", "list", "--page-size", "1", "--all"]);
    assert_eq!(paged.as_array().unwrap().len(), 2, "{paged}");

    // A workspace, and Dana in it as a developer (observing her membership's revision).
    let ws = ctl.json(&["workspaces", "create", "Production"]);
    let ws = ws["workspace"]["id"].as_str().unwrap().to_owned();
    ctl.ok(
        &[
            "--min-org-revision",
            &revision,
            "workspaces",
            "members",
            "add",
            &ws,
            &dana_id,
            "--role",
            "developer",
        ],
        None,
    );
    let ws_members = ctl.ok(&["workspaces", "members", "list", &ws], None);
    assert!(
        ws_members
            .lines()
            .any(|l| l.contains(&dana_id) && l.contains("DEVELOPER")),
        "{ws_members}"
    );
    let listed = ctl.ok(&["workspaces", "list"], None);
    assert!(listed.contains("Production"), "{listed}");

    // May Dana develop in Production? Yes; administer it? No (exit code 5).
    let allowed = ctl.ok(
        &[
            "--context",
            "dana",
            "check",
            "--org",
            &org,
            "--workspace",
            &ws,
            "--permission",
            "develop",
        ],
        None,
    );
    assert!(allowed.starts_with("allowed"), "{allowed}");
    let out = ctl.run(
        &[
            "--context",
            "dana",
            "check",
            "--org",
            &org,
            "--workspace",
            &ws,
            "--permission",
            "admin",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("denied"));
    // A user may check only their own access.
    let err = ctl.fails(
        &[
            "--context",
            "dana",
            "check",
            "--org",
            &org,
            "--workspace",
            &ws,
            "--user",
            "user_someone_else",
        ],
        None,
        1,
    );
    assert!(err.contains("reason: "), "{err}");

    // API keys: the secret is shown once; revoked keys are INACTIVE.
    let created = ctl.ok(&["api-keys", "create", "ci", "--workspace", &ws], None);
    let secret_line = created
        .lines()
        .find(|l| l.starts_with("secret: opk_"))
        .unwrap_or_else(|| panic!("{created}"));
    assert!(secret_line.len() > 20);
    let keys = ctl.json(&["api-keys", "list"]);
    let key_id = keys[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(keys[0]["status"], "API_KEY_STATUS_ACTIVE");
    ctl.ok(&["api-keys", "revoke", &key_id], None);
    let keys = ctl.ok(&["api-keys", "list", "--status", "inactive"], None);
    assert!(
        keys.contains(&key_id) && keys.contains("INACTIVE"),
        "{keys}"
    );

    // An admin API key in a context of its own acts for the organization.
    let created = ctl.ok(
        &["api-keys", "create", "automation", "--kind", "admin"],
        None,
    );
    let secret = created
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("{created}"));
    assert!(secret.starts_with("opk_admin_"), "{created}");
    ctl.ok(&["context", "add", "robot", "--server", &url], None);
    ctl.ok(
        &[
            "--context",
            "robot",
            "context",
            "set-credentials",
            "--api-key-stdin",
        ],
        Some(&format!("{secret}\n")),
    );
    let robot = ctl.ok(&["--context", "robot", "context", "show"], None);
    assert!(
        robot.contains("API key opk_admin_…") && !robot.contains(secret),
        "{robot}"
    );
    let mine = ctl.json(&["--context", "robot", "whoami"]);
    assert_eq!(mine["organization"]["id"], org.as_str());
    let listed = ctl.ok(
        &["--context", "robot", "workspaces", "list", "--org", &org],
        None,
    );
    assert!(listed.contains("Production"), "{listed}");

    // More daily tasks: a withdrawn invite, a changed role, an archived workspace.
    let invite = ctl.json(&["invites", "create", "nobody@example.com"]);
    let invite_id = invite["invite"]["id"].as_str().unwrap().to_owned();
    assert_eq!(invite["invite"]["role"], "ORG_ROLE_USER");
    let revoked = ctl.json(&["invites", "revoke", &invite_id]);
    assert_eq!(
        revoked["invite"]["state"], "INVITE_STATE_DELETED",
        "{revoked}"
    );
    let changed = ctl.json(&["members", "set-role", &dana_id, "admin"]);
    assert_eq!(changed["member"]["role"], "ORG_ROLE_ADMIN");
    ctl.ok(&["members", "set-role", &dana_id, "developer"], None);
    let scratch = ctl.json(&["workspaces", "create", "Scratch"]);
    let scratch = scratch["workspace"]["id"].as_str().unwrap().to_owned();
    let archived = ctl.json(&["workspaces", "archive", &scratch]);
    assert_eq!(archived["workspace"]["state"], "WORKSPACE_STATE_ARCHIVED");
    let shown = ctl.ok(&["workspaces", "get", &scratch], None);
    assert!(shown.contains("WORKSPACE_STATE_ARCHIVED"), "{shown}");
    let active = ctl.ok(&["workspaces", "list"], None);
    assert!(!active.contains("Scratch"), "{active}");
    let all = ctl.ok(&["workspaces", "list", "--include-archived"], None);
    assert!(all.contains("Scratch"), "{all}");

    // The audit trail of all four services, merged.
    let audit = ctl.ok(&["audit", "list", "--page-size", "100"], None);
    for action in [
        "organization.create",
        "invite.accept",
        "workspace.create",
        "api_key.create",
    ] {
        assert!(audit.contains(action), "{action} missing:\n{audit}");
    }
    let records = ctl.json(&["audit", "list", "--all", "--service", "organization"]);
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["service"].is_string()),
        "{records}"
    );
    let filtered = ctl.json(&[
        "audit",
        "list",
        "--action",
        "invite.accept",
        "--since",
        "1h",
    ]);
    assert_eq!(filtered.as_array().unwrap().len(), 1, "{filtered}");

    // `audit tail` follows: started with no backlog, it prints the next record and stops.
    let mut tail = Command::new(env!("CARGO_BIN_EXE_orgctl"))
        .args([
            "-o",
            "json",
            "audit",
            "tail",
            "--lines",
            "0",
            "--max-records",
            "1",
            "--interval",
            "0.2",
        ])
        .env("ORGCTL_CONFIG", &ctl.config)
        .env_remove("ORGCTL_CONTEXT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    ctl.ok(&["units", "create", "Platform"], None);
    let deadline = Instant::now() + Duration::from_secs(15);
    while tail.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "audit tail did not print the new record"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = tail.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let record: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(record["action"], "unit.create", "{record}");
    let units = ctl.ok(&["units", "list"], None);
    assert!(units.contains("Platform"), "{units}");

    // Billing: the account and the reports (empty without usage).
    let account = ctl.json(&["billing", "account"]);
    assert_eq!(account["billingAccount"]["organizationId"], org.as_str());
    ctl.ok(&["billing", "usage", "--group-by", "workspace,model"], None);
    ctl.ok(&["billing", "cost", "--start", "7d"], None);
    let usage = ctl.json(&["billing", "usage", "--bucket", "hour", "--start", "2h"]);
    assert!(usage.is_object(), "{usage}");
    let cost = ctl.json(&["billing", "cost"]);
    assert!(cost.is_object(), "{cost}");

    // Dana, a developer, may not read the billing reports.
    let err = ctl.fails(
        &["--context", "dana", "billing", "usage", "--org", &org],
        None,
        1,
    );
    assert!(
        err.contains("reason: INSUFFICIENT_ROLE") && err.contains("hint:"),
        "{err}"
    );

    // An expired access token is refreshed with the refresh token, and the new one stored.
    let before = std::fs::read_to_string(&ctl.config).unwrap();
    let expired = before
        .lines()
        .map(|l| {
            if l.starts_with("access_token_expire_time") {
                "access_token_expire_time = \"2000-01-01T00:00:00Z\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&ctl.config, expired).unwrap();
    ctl.ok(&["whoami"], None);
    ctl.ok(&["--context", "dana", "whoami"], None);
    let after = std::fs::read_to_string(&ctl.config).unwrap();
    assert!(
        !after.contains("2000-01-01"),
        "both sessions refreshed? {after}"
    );
    assert_ne!(before, after);

    // Errors: unknown organization, unreachable server, wrong command line.
    let err = ctl.fails(&["org", "get", "org_doesnotexist"], None, 1);
    assert!(
        err.starts_with("error: ") && err.contains("code: NOT_FOUND"),
        "{err}"
    );
    let err = ctl.fails(
        &[
            "--context",
            "dead",
            "signup",
            "--email",
            "x@example.com",
            "--name",
            "X",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
        4,
    );
    assert!(err.contains("cannot reach the server"), "{err}");
    ctl.fails(&["org", "create"], None, 2);
    ctl.fails(&["members", "set-role", &dana_id, "emperor"], None, 2);
    ctl.fails(&["audit", "list", "--since", "yesterday"], None, 2);

    // Signing out forgets the session; commands then say how to sign in.
    ctl.ok(&["--context", "dana", "logout"], None);
    let err = ctl.fails(&["--context", "dana", "org", "list"], None, 3);
    assert!(err.contains("orgctl login"), "{err}");

    // With a second factor, sign-in asks for a code after the password (here read from the next
    // line of standard input, or given with --mfa-code) and completes the challenge.
    let recovery = enroll_totp(&server, OLIVIA, OLIVIA_PASSWORD);
    assert!(recovery.len() >= 3);
    ctl.ok(
        &["login", OLIVIA, "--password-stdin"],
        Some(&format!("{OLIVIA_PASSWORD}\n{}\n", recovery[0])),
    );
    ctl.ok(
        &[
            "login",
            OLIVIA,
            "--password-stdin",
            "--mfa-code",
            &recovery[1],
        ],
        Some(&format!("{OLIVIA_PASSWORD}\n")),
    );
    let err = ctl.fails(
        &["login", OLIVIA, "--password-stdin"],
        Some(&format!("{OLIVIA_PASSWORD}\n{}\n", recovery[0])),
        1,
    );
    assert!(
        err.contains("reason: INVALID_MFA_CODE") && err.contains("hint:"),
        "{err}"
    );
    let me = ctl.json(&["whoami"]);
    assert_eq!(me["user"]["email"], OLIVIA);

    // Completions.
    let bash = ctl.ok(&["completion", "bash"], None);
    assert!(bash.contains("orgctl"));
    ctl.ok(&["completion", "zsh"], None);
    ctl.ok(&["completion", "fish"], None);
    ctl.ok(&["completion", "powershell"], None);

    // A configuration others may read is refused.
    #[cfg(unix)]
    {
        assert_eq!(mode(&ctl.config), 0o600);
        chmod(&ctl.config, 0o644);
        let err = ctl.fails(&["context", "list"], None, 3);
        assert!(err.contains("chmod 600"), "{err}");
        chmod(&ctl.config, 0o600);
        ctl.ok(&["context", "list"], None);
    }
}

#[test]
fn https_contexts_verify_the_server_and_present_a_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let ca = orgplane_platform::tls::testing::TestCa::new("orgctl test CA");
    let ca_path = ca.write(pki.path(), "ca");
    let (cert, key) = ca
        .issue(&["127.0.0.1", "localhost"])
        .write(pki.path(), "server");
    let (client_cert, client_key) = ca
        .issue(&["spiffe://orgctl/test"])
        .write(pki.path(), "client");
    let server = Server::start_with(
        &[
            "--tls-cert".to_owned(),
            cert.display().to_string(),
            "--tls-key".to_owned(),
            key.display().to_string(),
            "--tls-ca".to_owned(),
            ca_path.display().to_string(),
            "--tls-client-ca".to_owned(),
            ca_path.display().to_string(),
        ],
        "https",
    );
    let home = tempfile::tempdir().unwrap();
    let ctl = Orgctl {
        config: home.path().join("config.toml"),
    };
    let url = server.url();
    let ca = ca_path.display().to_string();
    let (client_cert, client_key) = (
        client_cert.display().to_string(),
        client_key.display().to_string(),
    );
    let signup = |context: &str, email: &str| {
        ctl.run(
            &[
                "--context",
                context,
                "signup",
                "--email",
                email,
                "--name",
                "T",
                "--password-stdin",
            ],
            Some(&format!("{OLIVIA_PASSWORD}\n")),
        )
    };

    // Verified against the given CA.
    ctl.ok(
        &["context", "add", "tls", "--server", &url, "--ca-cert", &ca],
        None,
    );
    let out = signup("tls", "tls@example.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With a client certificate (mutual TLS).
    ctl.ok(
        &[
            "context",
            "add",
            "mtls",
            "--server",
            &url,
            "--ca-cert",
            &ca,
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
        ],
        None,
    );
    let out = signup("mtls", "mtls@example.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the CA, the Web PKI roots do not know the server's certificate.
    ctl.ok(&["context", "add", "untrusted", "--server", &url], None);
    let out = signup("untrusted", "untrusted@example.com");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the server"));

    // TLS files with a plaintext URL, or a key without its certificate, are refused up front.
    ctl.fails(
        &[
            "context",
            "add",
            "mixed",
            "--server",
            &server.url().replace("https", "http"),
            "--ca-cert",
            &ca,
        ],
        None,
        2,
    );
    ctl.fails(
        &[
            "context",
            "add",
            "half",
            "--server",
            &url,
            "--client-key",
            &client_key,
        ],
        None,
        2,
    );
}
