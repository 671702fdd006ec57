//! Audit record images: resources as canonical proto3 JSON, and JSON as `google.protobuf.Struct`
//! for the API.

use orgplane_proto::audit::v1::AuditEvent;

use super::row;

/// `message` as canonical proto3 JSON ([`orgplane_proto::proto_json`]); `null`, logged, if it
/// is not an Orgplane message.
pub fn proto_json<M: prost::Message + prost::Name>(message: &M) -> serde_json::Value {
    orgplane_proto::proto_json(message).unwrap_or_else(|| {
        tracing::error!(message = %M::full_name(), "no descriptor for an audited message");
        serde_json::Value::Null
    })
}

/// Converts JSON into a `google.protobuf.Value` kind.
pub fn json_to_prost(v: serde_json::Value) -> prost_types::value::Kind {
    use prost_types::value::Kind;
    match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a
                .into_iter()
                .map(|v| prost_types::Value {
                    kind: Some(json_to_prost(v)),
                })
                .collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        prost_types::Value {
                            kind: Some(json_to_prost(v)),
                        },
                    )
                })
                .collect(),
        }),
    }
}

pub(super) fn to_proto(r: row::Model) -> AuditEvent {
    let structured = |s: Option<String>| {
        s.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| match json_to_prost(v) {
                prost_types::value::Kind::StructValue(s) => Some(s),
                _ => None,
            })
    };
    AuditEvent {
        id: r.id,
        organization_id: r.organization_id,
        service: r.service,
        actor_kind: r.actor_kind,
        actor_id: r.actor_id,
        action: r.action,
        resource_type: r.resource_type,
        resource_id: r.resource_id,
        create_time: Some(crate::convert::timestamp_ms(r.create_time_ms)),
        request_id: r.request_id,
        trace_id: r.trace_id,
        outcome: r.outcome,
        status_code: r.status_code,
        error_reason: r.error_reason,
        before: structured(r.before_json),
        after: structured(r.after_json),
        actor_organization_id: r.actor_organization_id,
    }
}
