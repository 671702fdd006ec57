//! `orgplane.errors.v1.ErrorReason` is the contract of every `ErrorInfo.reason`: each value is
//! documented, and every reason the other protos cite in their comments is one of its values.
//! (That code emits only listed reasons is checked by the compiler: `ApiError` is made from the
//! generated enum, never from text.)

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

use orgplane_proto::errors::v1::ErrorReason;

fn proto_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/orgplane")
}

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("proto dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            proto_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

/// The `UPPER_SNAKE` words written in backticks right after "reason"/"reasons" in `text`
/// (`reason \`INSUFFICIENT_ROLE\``, `reasons \`A\`, \`B\` or \`C\``).
fn cited_reasons(text: &str) -> Vec<String> {
    let mut cited = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("reason") {
        rest = &rest[at + "reason".len()..];
        let mut tail = rest.strip_prefix('s').unwrap_or(rest);
        // A list: `A`, `B` or `C`, each name in backticks, separated by commas, "or", "and".
        loop {
            tail = tail.trim_start_matches([' ', ',', '\n', '/']);
            for joiner in ["or ", "and "] {
                tail = tail.strip_prefix(joiner).unwrap_or(tail);
            }
            let Some(quoted) = tail.strip_prefix('`') else {
                break;
            };
            let Some(end) = quoted.find('`') else { break };
            let word = &quoted[..end];
            if !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                cited.push(word.to_owned());
            }
            tail = &quoted[end + 1..];
        }
    }
    cited
}

#[test]
fn every_reason_cited_in_the_protos_is_an_error_reason() {
    let mut files = Vec::new();
    proto_files(&proto_root(), &mut files);
    let mut cited = 0;
    let mut unknown = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read proto");
        for reason in cited_reasons(&text) {
            cited += 1;
            if ErrorReason::from_str_name(&reason).is_none() {
                unknown.push(format!("{}: {reason}", file.display()));
            }
        }
    }
    assert!(
        cited > 100,
        "only {cited} cited reasons found: the scan is broken"
    );
    assert!(
        unknown.is_empty(),
        "reasons cited in proto comments but missing from orgplane.errors.v1.ErrorReason:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_scan_sees_a_reason_the_enum_lacks() {
    let cited = cited_reasons("// - PERMISSION_DENIED, reason `NO_SUCH_REASON`: never.");
    assert_eq!(cited, ["NO_SUCH_REASON"]);
    assert!(ErrorReason::from_str_name(&cited[0]).is_none());
    let listed = cited_reasons("reasons `INSUFFICIENT_ROLE`, `MFA_REQUIRED` or `SSO_REQUIRED`");
    assert_eq!(listed.len(), 3);
}

#[test]
fn every_error_reason_is_documented() {
    let text =
        std::fs::read_to_string(proto_root().join("errors/v1/errors.proto")).expect("errors.proto");
    let lines: Vec<&str> = text.lines().collect();
    let mut values = 0;
    let mut undocumented = Vec::new();
    let start = lines
        .iter()
        .position(|l| l.starts_with("enum ErrorReason"))
        .expect("enum ErrorReason");
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let line = line.trim();
        let Some((name, number)) = line.split_once(" = ") else {
            continue;
        };
        if !number.ends_with(';') {
            continue;
        }
        values += 1;
        assert!(
            ErrorReason::from_str_name(name).is_some(),
            "{name} is not in the generated enum"
        );
        let documented = i > 0 && {
            let above = lines[i - 1].trim();
            above.starts_with("//")
                && !above.starts_with("// ----")
                && !above.trim_start_matches('/').trim().is_empty()
        };
        if !documented {
            undocumented.push(name.to_owned());
        }
    }
    assert!(values > 100, "only {values} values parsed");
    assert!(
        undocumented.is_empty(),
        "ErrorReason values without a comment: {undocumented:?}"
    );
}
