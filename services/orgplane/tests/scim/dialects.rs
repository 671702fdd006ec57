//! The dialect replay set: request sequences as Okta, Entra ID and a PUT-only client send
//! them (`scim/dialects/*.json`, written from their public documentation, cited in each file's
//! `source`), replayed against the running system. Each step names its method, path (with
//! `{{captures}}`), body, expected status, expected body subset, and the values it captures.

use std::collections::HashMap;

use serde_json::Value;

use crate::rig::Rig;

/// Whether `actual` contains `expected`: objects by key (recursively), arrays when every
/// expected element matches some actual element, scalars by equality.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (Value::Array(a), Value::Array(e)) => e.iter().all(|ev| a.iter().any(|av| contains(av, ev))),
        _ => actual == expected,
    }
}

fn fill(text: &str, captures: &HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (k, v) in captures {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

async fn replay(file: &str) {
    let path = format!("{}/tests/scim/dialects/{file}", env!("CARGO_MANIFEST_DIR"));
    let script: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        script["source"].as_str().is_some_and(|s| s.starts_with("https://")),
        "{file} cites its source"
    );
    let rig = Rig::start(false).await.unwrap();
    let t = rig.tenant("Dialects", "acme.test").await;
    let mut captures: HashMap<String, String> = HashMap::new();
    for (i, step) in script["steps"].as_array().unwrap().iter().enumerate() {
        let name = step["name"].as_str().unwrap_or_default();
        let method = step["method"].as_str().unwrap();
        let target = fill(step["path"].as_str().unwrap(), &captures);
        let body = step
            .get("body")
            .map(|b| serde_json::from_str::<Value>(&fill(&b.to_string(), &captures)).unwrap());
        let answer = rig
            .scim(Some(&t.token), method, &target, body.as_ref(), &[])
            .await;
        let want = step["status"].as_u64().unwrap();
        assert_eq!(
            u64::from(answer.status),
            want,
            "{file} step {i} ({name}): {method} {target}: {}",
            answer.body
        );
        if let Some(expected) = step.get("expect") {
            let expected: Value = serde_json::from_str(&fill(&expected.to_string(), &captures)).unwrap();
            assert!(
                contains(&answer.body, &expected),
                "{file} step {i} ({name}): {} does not contain {expected}",
                answer.body
            );
        }
        if let Some(Value::Object(caps)) = step.get("capture") {
            for (var, pointer) in caps {
                let v = answer
                    .body
                    .pointer(pointer.as_str().unwrap())
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{file} step {i}: nothing at {pointer}"));
                captures.insert(var.clone(), v.to_owned());
            }
        }
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_dialect_okta() {
    replay("okta.json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_dialect_entra() {
    replay("entra.json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_dialect_put_only() {
    replay("put_only.json").await;
}
