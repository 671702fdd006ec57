//! `orgctl api-keys …`: an organization's API keys.

use orgplane_proto::identity::v1 as pb;

use crate::app::{App, note_next_page, paginate};
use crate::cli::{ApiKeyKind, ApiKeysCommand};
use crate::errors::Failure;
use crate::output::{self, Column, col, enum_col, proto_json};

const KEY_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("NAME", "name"),
    enum_col("KIND", "kind", "API_KEY_KIND_"),
    enum_col("STATUS", "status", "API_KEY_STATUS_"),
    col("WORKSPACE", "workspaceId"),
    col("HINT", "partialKeyHint"),
    col("LAST USED", "lastUsedTime"),
];

/// Runs `orgctl api-keys …`.
pub async fn run(app: &mut App, command: ApiKeysCommand) -> Result<(), Failure> {
    let api = app.api().await?;
    let client = api.identity();
    match command {
        ApiKeysCommand::Create {
            name,
            kind,
            workspace,
            org,
        } => {
            if kind == ApiKeyKind::Admin && workspace.is_some() {
                return Err(Failure::usage(
                    "admin keys are not bound to a workspace: drop --workspace",
                ));
            }
            let organization_id = app.org(&org)?;
            let answer = client
                .clone()
                .create_api_key(api.request(pb::CreateApiKeyRequest {
                    organization_id,
                    api_key: Some(pb::ApiKey {
                        name,
                        kind: kind.number(),
                        workspace_id: workspace.unwrap_or_default(),
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::new_v4().to_string(),
                }))
                .await?
                .into_inner();
            match app.format {
                output::Format::Json => output::print_json(&proto_json(&answer)),
                output::Format::Table => {
                    out!(
                        "{}",
                        output::details(&proto_json(&answer.api_key.clone().unwrap_or_default()))
                    );
                    outln!("secret: {}", answer.secret);
                }
            }
            eprintln!("the secret is shown this once: store it now");
        }
        ApiKeysCommand::List {
            org,
            status,
            kind,
            page,
        } => {
            let organization_id = app.org(&org)?;
            let (items, next) = paginate(&page, |page_token, page_size| {
                let mut client = client.clone();
                let request = api.request(pb::ListApiKeysRequest {
                    organization_id: organization_id.clone(),
                    page_size,
                    page_token,
                    status: status.map(|s| s.number()).unwrap_or_default(),
                    kind: kind.map(|k| k.number()).unwrap_or_default(),
                    workspace_id: None,
                });
                async move {
                    let r = client.list_api_keys(request).await?.into_inner();
                    Ok((r.api_keys, r.next_page_token))
                }
            })
            .await?;
            let items: Vec<_> = items.iter().map(proto_json).collect();
            output::print_list(app.format, &items, KEY_COLUMNS);
            note_next_page(&next);
        }
        ApiKeysCommand::Revoke { api_key_id } => {
            let answer = client
                .clone()
                .update_api_key(api.request(pb::UpdateApiKeyRequest {
                    api_key: Some(pb::ApiKey {
                        id: api_key_id,
                        status: pb::ApiKeyStatus::Inactive as i32,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["status".into()],
                    }),
                    etag: String::new(),
                }))
                .await?
                .into_inner();
            output::print_one(app.format, &proto_json(&answer), "apiKey");
        }
    }
    Ok(())
}
