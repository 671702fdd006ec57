//! What the standard tools read, from the real `orgplane` binary (all four services, TLS on):
//! `/metrics` parses as the Prometheus text format and passes promtool's lint rules (HELP and
//! TYPE on every family, counters ending in `_total`, complete histograms), the gRPC families
//! carry go-grpc-prometheus' label names, every metric the Grafana dashboard and the alert rules
//! query (`k8s/observability/metrics-used.txt`) is exported, and with `--log-format json` every
//! line of stdout is JSON, with exactly one access line per RPC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;

use orgplane_platform::testkit::bearer;
use orgplane_platform::tls::TlsSettings;
use orgplane_platform::tls::client::ClientTls;
use orgplane_platform::tls::testing::TestCa;
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;
use tokio::io::AsyncBufReadExt;

const PASSWORD: &str = "correct horse battery staple";

/// `request` with `x-request-id: id`.
fn with_id<T>(mut request: tonic::Request<T>, id: &str) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

/// Every family's `# HELP` and `# TYPE`, and its samples' names and labels, read line by line
/// (the lint rules need the comment lines, which a parser drops).
struct Families {
    text: String,
    help: BTreeMap<String, String>,
    kind: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>)>,
}

fn families(text: &str) -> Families {
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the Prometheus text format parses");
    let mut help = BTreeMap::new();
    let mut kind = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.splitn(4, ' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name), text) => {
                help.insert(name.to_owned(), text.unwrap_or_default().to_owned());
            }
            (Some("#"), Some("TYPE"), Some(name), Some(t)) => {
                kind.insert(name.to_owned(), t.to_owned());
            }
            _ => {}
        }
    }
    let samples = parsed
        .samples
        .into_iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (s.metric, labels)
        })
        .collect();
    Families {
        text: text.to_owned(),
        help,
        kind,
        samples,
    }
}

/// The family a sample belongs to (histogram series carry `_bucket`, `_sum`, `_count`).
fn family_of<'a>(name: &'a str, kinds: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && kinds
                .get(base)
                .is_some_and(|k| k == "histogram" || k == "summary")
        {
            return base;
        }
    }
    name
}

/// promtool's `check metrics` rules that apply to this output.
fn lint(f: &Families) -> Vec<String> {
    let mut problems = Vec::new();
    let names: BTreeSet<&str> = f
        .samples
        .iter()
        .map(|(n, _)| family_of(n, &f.kind))
        .collect();
    for name in &names {
        if f.help.get(*name).is_none_or(|h| h.trim().is_empty()) {
            problems.push(format!("{name}: no HELP"));
        }
        match f.kind.get(*name).map(String::as_str) {
            None => problems.push(format!("{name}: no TYPE")),
            Some("counter") if !name.ends_with("_total") => {
                problems.push(format!("{name}: a counter should end in _total"))
            }
            Some(t) if t != "counter" && name.ends_with("_total") => {
                problems.push(format!("{name}: _total on a {t}"))
            }
            _ => {}
        }
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            problems.push(format!("{name}: not snake_case"));
        }
        if name.contains("_milliseconds") || name.contains("_microseconds") {
            problems.push(format!("{name}: use base units (seconds)"));
        }
    }
    // Histograms: buckets with `le`, ending at +Inf, beside _sum and _count.
    for (name, kind) in &f.kind {
        if kind != "histogram" || !names.contains(name.as_str()) {
            continue;
        }
        let has = |suffix: &str| {
            let series = format!("{name}{suffix}");
            f.text.lines().any(|l| {
                l.strip_prefix(series.as_str())
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        };
        let infinite = format!("{name}_bucket{{");
        let ends = f
            .text
            .lines()
            .any(|l| l.starts_with(&infinite) && l.contains("le=\"+Inf\""));
        if !(has("_bucket") && has("_sum") && has("_count") && ends) {
            problems.push(format!("{name}: incomplete histogram"));
        }
    }
    let mut seen = BTreeSet::new();
    for (name, labels) in &f.samples {
        if !seen.insert(format!("{name}{labels:?}")) {
            problems.push(format!("{name}{labels:?}: duplicate series"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn observability_metrics_pass_the_lint_with_standard_labels_and_logs_are_json_one_line_per_rpc()
 {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("observability CA");
    let ca_path = ca.write(dir.path(), "ca");
    let (cert, key) = ca.issue(&["127.0.0.1"]).write(dir.path(), "tls");
    let ports = support::cluster::free_ports(3);
    let (grpc, http, metrics) = (ports[0], ports[1], ports[2]);
    let mut child = tokio::process::Command::new(support::orgplane_binary())
        .args(["all", "--log-format", "json"])
        .current_dir(dir.path())
        .env("ORGPLANE_LISTEN", format!("127.0.0.1:{grpc}"))
        .env("ORGPLANE_HTTP_LISTEN", format!("127.0.0.1:{http}"))
        .env("ORGPLANE_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))
        .env("ORGPLANE_DATA_DIR", dir.path().join("data"))
        .env("ORGPLANE_TLS_CERT", &cert)
        .env("ORGPLANE_TLS_KEY", &key)
        .env("ORGPLANE_TLS_CA", &ca_path)
        .env("ORGPLANE_PASSWORD_HASH_MEMORY_KIB", "1024")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut reader = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            all.push(line);
        }
        all
    });

    let settings = TlsSettings {
        ca: Some(ca_path.clone()),
        ..Default::default()
    };
    let tls = ClientTls::new(&settings, None).unwrap();
    let channel =
        orgplane_platform::clients::connect_lazy(&format!("https://127.0.0.1:{grpc}"), Some(&tls))
            .unwrap()
            .into_inner();
    support::wait_serving(channel.clone(), "").await;

    // RPCs with request ids of ours: a sign-up (a password hash), a refusal with a reason.
    let mut identity =
        identity::identity_service_client::IdentityServiceClient::new(channel.clone());
    identity
        .sign_up(with_id(
            tonic::Request::new(identity::SignUpRequest {
                email: "olivia@observability.example".into(),
                password: PASSWORD.into(),
                display_name: "Olivia".into(),
                account_type: identity::AccountType::Business as i32,
                request_id: String::new(),
            }),
            "obs-signup",
        ))
        .await
        .unwrap();
    let refused = org::organization_service_client::OrganizationServiceClient::new(channel.clone())
        .get_organization(with_id(
            bearer(
                org::GetOrganizationRequest {
                    organization_id: "org_nope".into(),
                },
                "not-a-token",
            ),
            "obs-refused",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let web = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    web.get(format!("https://127.0.0.1:{http}/healthz"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let text = web
        .get(format!("https://127.0.0.1:{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let f = families(&text);
    let problems = lint(&f);
    assert!(problems.is_empty(), "promtool's rules: {problems:#?}");
    // go-grpc-prometheus' label names, and nothing else, on the standard families.
    for family in ["grpc_server_handled_total", "grpc_client_handled_total"] {
        let series: Vec<_> = f.samples.iter().filter(|(n, _)| n == family).collect();
        assert!(!series.is_empty(), "{family} is exported");
        for (_, labels) in series {
            let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
                "{family}"
            );
        }
    }
    assert!(
        f.samples
            .iter()
            .any(|(n, l)| n == "grpc_server_handled_total"
                && l["grpc_service"] == "orgplane.identity.v1.IdentityService"
                && l["grpc_method"] == "SignUp"
                && l["grpc_code"] == "OK"
                && l["grpc_type"] == "unary")
    );
    assert!(
        f.samples
            .iter()
            .any(|(n, l)| n == "grpc_server_started_total"
                && l["grpc_method"] == "Watch"
                && l["grpc_type"] == "server_stream"),
        "the event streams are server streams"
    );
    assert!(
        f.samples
            .iter()
            .any(|(n, l)| n == "orgplane_rpc_errors_total"
                && l["grpc_method"] == "GetOrganization"
                && l["grpc_code"] == "Unauthenticated"
                && l["reason"] == "INVALID_TOKEN")
    );
    // Buckets reach past the 30 s default deadline.
    assert!(
        f.text
            .lines()
            .any(|l| l.starts_with("grpc_server_handling_seconds_bucket{")
                && l.contains("le=\"60\""))
    );
    assert!(f.samples.iter().any(|(n, l)| n == "orgplane_build_info"
        && l["service"] == "orgplane"
        && l["version"] == env!("CARGO_PKG_VERSION")));

    // Every metric the dashboard and the alert rules query is one this process exports.
    let used = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../k8s/observability/metrics-used.txt"),
    )
    .unwrap();
    let exported: BTreeSet<&str> = f
        .samples
        .iter()
        .map(|(n, _)| family_of(n, &f.kind))
        .collect();
    let missing: Vec<&str> = used
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !exported.contains(l))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard or the alert rules query metrics orgplane does not export: {missing:?}"
    );

    // Logs: stop, then read everything stdout had.
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    let lines = lines.await.unwrap();
    assert!(!lines.is_empty());
    let mut access: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    let mut started = false;
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        let fields = &value["fields"];
        if value["target"] == "orgplane::start" {
            started = fields["addr"] == format!("127.0.0.1:{grpc}")
                && fields["transport"] == "gRPC over TLS";
        }
        if value["target"] == "orgplane::access" {
            let id = fields["request_id"].as_str().unwrap_or_default().to_owned();
            access.entry(id).or_default().push(fields.clone());
        }
    }
    assert!(started, "the start-up summary is one JSON line");
    let signup = &access["obs-signup"];
    assert_eq!(signup.len(), 1, "one access line per RPC: {signup:?}");
    assert_eq!(
        signup[0]["rpc"],
        "/orgplane.identity.v1.IdentityService/SignUp"
    );
    assert_eq!(signup[0]["code"], "OK");
    assert_eq!(signup[0]["principal"], "anonymous");
    assert!(signup[0]["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(signup[0]["trace_id"].as_str().unwrap().len(), 32);
    let refused = &access["obs-refused"];
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["code"], "UNAUTHENTICATED");
    assert_eq!(refused[0]["reason"], "INVALID_TOKEN");
    // Internal calls are logged too, with their service principal; no line carries a secret.
    assert!(
        access
            .values()
            .flatten()
            .any(|f| f["principal"] == "service")
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains(PASSWORD) && !l.contains("not-a-token")),
        "no credential is logged"
    );
}
