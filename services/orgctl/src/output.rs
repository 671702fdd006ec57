//! Output: aligned tables for people (the default) and proto3 JSON (`-o json`) for programs.
//!
//! JSON is the canonical proto3 mapping, as `grpcurl` and `buf curl` print it (lowerCamelCase
//! names, enum value names, RFC 3339 timestamps, 64-bit integers as strings, default values left
//! out), produced as the audit log renders resources (`orgplane_proto::proto_json`). A command answering one message prints that response; a list prints
//! one JSON array of its items (all pages with `--all`).

use clap::ValueEnum;
use serde_json::Value;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns (lists) or `field: value` lines (single resources), for people.
    Table,
    /// Canonical proto3 JSON, one document: the response, or an array of a list's items.
    Json,
}

/// `message` as canonical proto3 JSON ([`orgplane_proto::proto_json`]); `null` if its
/// descriptor is unknown (never for Orgplane messages).
pub fn proto_json<M: prost::Message + prost::Name>(message: &M) -> Value {
    orgplane_proto::proto_json(message).unwrap_or(Value::Null)
}

/// Writes `text` to standard output. When the reader went away (`orgctl audit list | head`),
/// orgctl ends quietly instead of failing; any other write error ends it with exit code 1.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(i32::from(crate::errors::EXIT_SERVER));
    }
}

/// Prints a JSON document on standard output.
pub fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(_) => outln!("null"),
    }
}

/// One column of a table: its header, the proto3 JSON field path of its value (dotted), and an
/// enum prefix to strip (`ORG_ROLE_` turns `ORG_ROLE_DEVELOPER` into `DEVELOPER`).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The header.
    pub header: &'static str,
    /// The dotted JSON path (`role`, `invite.email`).
    pub path: &'static str,
    /// The enum prefix to strip, or empty.
    pub strip: &'static str,
}

/// A column without enum prefix.
pub const fn col(header: &'static str, path: &'static str) -> Column {
    Column {
        header,
        path,
        strip: "",
    }
}

/// A column of enum values with `strip` removed.
pub const fn enum_col(header: &'static str, path: &'static str, strip: &'static str) -> Column {
    Column {
        header,
        path,
        strip,
    }
}

/// Looks a dotted path up in a JSON value.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// A JSON value as a table cell: strings as they are (timestamps shortened), arrays joined.
pub fn cell(value: Option<&Value>, strip: &str) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return t
                    .with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string();
            }
            s.strip_prefix(strip)
                .filter(|_| !strip.is_empty())
                .unwrap_or(s)
                .to_owned()
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| cell(Some(v), strip))
            .collect::<Vec<_>>()
            .join(","),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(v) => v.to_string(),
    }
}

/// A plain table: headers and rows of cells, printed with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    /// The column headers.
    pub headers: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// The table as text: columns separated by at least two spaces, trailing blanks trimmed.
    pub fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(self.headers.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in row.iter().enumerate() {
                line.push_str(c);
                if i + 1 < row.len() {
                    let pad = widths
                        .get(i)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(c.chars().count());
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints a list: a table of `columns` or a JSON array of the items.
pub fn print_list(format: Format, items: &[Value], columns: &[Column]) {
    match format {
        Format::Json => print_json(&Value::Array(items.to_vec())),
        Format::Table => {
            let mut table = Table::new(columns.iter().map(|c| c.header));
            for item in items {
                table.rows.push(
                    columns
                        .iter()
                        .map(|c| cell(lookup(item, c.path), c.strip))
                        .collect(),
                );
            }
            out!("{}", table.render());
        }
    }
}

/// Prints one answer: in JSON the whole `response`; as a table the fields of `response[key]`
/// (or of the response itself when `key` is empty), one `field: value` line each.
pub fn print_one(format: Format, response: &Value, key: &str) {
    match format {
        Format::Json => print_json(response),
        Format::Table => {
            let shown = if key.is_empty() {
                Some(response)
            } else {
                response.get(key)
            };
            out!("{}", details(shown.unwrap_or(&Value::Null)));
        }
    }
}

/// The fields of a JSON object as aligned `field: value` lines (nested objects flattened with
/// dots).
pub fn details(value: &Value) -> String {
    let mut pairs = Vec::new();
    flatten("", value, &mut pairs);
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}:{}{v}\n", " ".repeat(width - k.len() + 1)))
        .collect()
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Object(_) | Value::Null if prefix.is_empty() => {}
        v => out.push((prefix.to_owned(), cell(Some(v), ""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(["ID", "NAME"]);
        t.rows.push(vec!["org_1".into(), "Acme".into()]);
        t.rows.push(vec!["o".into(), "".into()]);
        assert_eq!(t.render(), "ID     NAME\norg_1  Acme\no\n");
    }

    #[test]
    fn proto_json_is_canonical() {
        let org = orgplane_proto::organization::v1::Organization {
            id: "org_1".into(),
            r#type: 1,
            create_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = proto_json(&org);
        assert_eq!(v["id"], "org_1");
        assert_eq!(v["type"], "ORGANIZATION_TYPE_COMPANY");
        assert_eq!(v["createTime"], "1970-01-01T00:00:00Z");
        assert_eq!(cell(v.get("createTime"), ""), "1970-01-01 00:00:00");
        assert_eq!(cell(v.get("type"), "ORGANIZATION_TYPE_"), "COMPANY");
    }
}
