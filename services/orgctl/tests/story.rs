//! orgctl end to end: the built `orgctl` binary against a real `orgplane all` (the four services
//! in this test process, on a loopback port chosen by the OS), driving the README's story with
//! nothing but orgctl commands: contexts, sign-up, the mailed verification link, sign-in with
//! the password on standard input, an organization, an invite accepted by a second person,
//! roles, a workspace, an access check, API keys, the audit trail (listed and followed), the
//! billing reports, JSON output, error reasons with hints and exit codes, session refresh, and
//! the configuration file's permissions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "story/accounts.rs"]
mod accounts;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

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

    accounts::story(&ctl, &org, &dana_id);

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
