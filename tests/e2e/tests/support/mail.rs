//! Reading the development mail (`.eml` files) the services write, as a user reads their inbox.

use std::path::Path;

/// The bodies of every mail in `dir` addressed to `to`, oldest first.
pub fn mails_to(dir: &Path, to: &str) -> Vec<String> {
    let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let addressed = text.lines().any(|l| {
            l.strip_prefix("To: ").is_some_and(|v| {
                v.trim().trim_matches(['<', '>']) == to || v.contains(&format!("<{to}>"))
            })
        });
        if addressed {
            let time = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            found.push((time, text));
        }
    }
    found.sort_by_key(|(t, _)| *t);
    found.into_iter().map(|(_, t)| t).collect()
}

/// The text following `marker` in the newest mail to `to` that contains it, up to the next
/// whitespace or closing parenthesis.
pub fn newest_value_after(dir: &Path, to: &str, marker: &str) -> String {
    for text in mails_to(dir, to).iter().rev() {
        if let Some(i) = text.find(marker) {
            let rest = &text[i + marker.len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == ')' || c == ';')
                .unwrap_or(rest.len());
            return rest[..end].to_owned();
        }
    }
    panic!("no mail to {to} containing {marker:?} in {}", dir.display());
}

/// The token of the newest verification link mailed to `to`.
pub fn verification_token(dir: &Path, to: &str) -> String {
    newest_value_after(dir, to, "verify-email?token=")
}

/// The invite id of the newest invitation mailed to `to` (from its link).
pub fn invite_id(dir: &Path, to: &str) -> String {
    let link = newest_value_after(dir, to, "/invites/");
    assert!(link.starts_with("inv_"), "an invite id: {link}");
    link
}
