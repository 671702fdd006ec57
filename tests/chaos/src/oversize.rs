//! Oversized and hostile text in every string field (rule ORG-8's filter and every free-text
//! field, issue 20 case 5): for every unary RPC of the services, each top-level string field
//! and each string field of a top-level message field is sent, one at a time, as 25,000 `%`
//! (a LIKE pattern too complex for SQLite if it reached one), 50,000 letters, and text with a NUL
//! character (which PostgreSQL cannot store), by the owner of the tenant whose ids fill the
//! request's other id fields. No answer may be INTERNAL, UNKNOWN, DATA_LOSS or UNAVAILABLE: bad
//! input is the caller's error, with a code that says so.

use prost_types::field_descriptor_proto::{Label, Type};
use tonic::Code;

use crate::Figures;
use crate::escalation::Protos;
use crate::harness::Harness;
use crate::security::{Cred, Target, call, required_fields};

/// The ids of the tenant whose owner sends the requests, by the field names that carry them.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    /// (field name, id) pairs: `organization_id`, `workspace_id`, `unit_id`, …
    pub by_field: Vec<(&'static str, String)>,
}

impl Ids {
    fn get(&self, field: &str) -> Option<&str> {
        let field = match field {
            "parent_unit_id" => "unit_id",
            "operator_organization_id" | "prime_organization_id" | "candidate_organization_id" => {
                "organization_id"
            }
            "parent_account_id" => "account_id",
            f => f,
        };
        self.by_field
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }
}

/// The hostile values, by name.
fn values() -> [(&'static str, String); 3] {
    [
        ("25000 '%'", "%".repeat(25_000)),
        ("50000 letters", "a".repeat(50_000)),
        ("NUL", "a\u{0}b".to_owned()),
    ]
}

/// RPCs left out: Logout ends the sender's session, after which the rest of the sweep would only
/// test authentication.
const SKIPPED: [&str; 1] = ["Logout"];

/// One attacked field: its path (for the report) and how to encode a value into it.
struct Slot {
    path: String,
    /// Top-level field number, and the nested field number when the string is inside a message.
    outer: u32,
    inner: Option<u32>,
}

fn slots(protos: &Protos, input: &str) -> Vec<Slot> {
    let Some(message) = protos.messages.get(input) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in &message.field {
        if f.label() == Label::Repeated {
            continue;
        }
        match f.r#type() {
            Type::String => out.push(Slot {
                path: f.name().to_owned(),
                outer: f.number() as u32,
                inner: None,
            }),
            Type::Message if f.type_name().starts_with(".orgplane.") => {
                if let Some(nested) = protos.messages.get(f.type_name()) {
                    for g in &nested.field {
                        if g.r#type() == Type::String && g.label() != Label::Repeated {
                            out.push(Slot {
                                path: format!("{}.{}", f.name(), g.name()),
                                outer: f.number() as u32,
                                inner: Some(g.number() as u32),
                            });
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn encode(slot: &Slot, value: &str, buf: &mut Vec<u8>) {
    match slot.inner {
        None => prost::encoding::string::encode(slot.outer, &value.to_owned(), buf),
        Some(inner) => {
            let mut nested = Vec::new();
            prost::encoding::string::encode(inner, &value.to_owned(), &mut nested);
            prost::encoding::bytes::encode(slot.outer, &nested, buf);
        }
    }
}

/// Sends every hostile value to every string field as the owner of the tenant `ids` (whose token
/// `owner` mints), and records each answer.
pub async fn sweep(h: &Harness, f: &mut Figures, owner: &str, ids: &Ids) -> anyhow::Result<usize> {
    let protos = Protos::load()?;
    let mut sent = 0;
    for (path, service, input, _, streaming) in &protos.methods {
        let method = path.rsplit('/').next().unwrap_or_default();
        if *streaming || SKIPPED.contains(&method) {
            continue;
        }
        let message = protos.messages.get(input.as_str());
        let mut base = required_fields(method);
        for field in message.iter().flat_map(|m| m.field.iter()) {
            if field.r#type() == Type::String
                && let Some(id) = ids.get(field.name())
            {
                prost::encoding::string::encode(field.number() as u32, &id.to_owned(), &mut base);
            }
        }
        let target = Target {
            path: path.clone(),
            service,
            id_fields: Vec::new(),
        };
        for slot in slots(&protos, input) {
            for (label, value) in values() {
                let mut body = base.clone();
                encode(&slot, &value, &mut body);
                let cred = Cred::Token(h.user_token(owner)?);
                sent += 1;
                match call(h, &target, body, &cred).await {
                    Ok(_) => f.attacks_passed += 1,
                    Err(s)
                        if matches!(
                            s.code(),
                            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable
                        ) =>
                    {
                        f.attacks_failed += 1;
                        f.failures.push(format!(
                            "{path} {} = {label}: {:?} {}",
                            slot.path,
                            s.code(),
                            s.message().chars().take(160).collect::<String>()
                        ));
                    }
                    Err(_) => f.attacks_passed += 1,
                }
            }
        }
    }
    Ok(sent)
}
