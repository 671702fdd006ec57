//! `orgctl context …`: the configuration file's contexts.

use serde_json::json;

use super::{or_dash, secret_from_stdin};
use crate::app::App;
use crate::cli::{ContextCommand, SetCredentialsArgs};
use crate::config::{Context, Credentials};
use crate::errors::Failure;
use crate::output::{self, Format, Table};

/// Runs `orgctl context …`.
pub fn run(app: &mut App, command: ContextCommand) -> Result<(), Failure> {
    match command {
        ContextCommand::Add {
            name,
            server,
            ca_cert,
            client_cert,
            client_key,
            force,
        } => {
            if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(Failure::usage(format!(
                    "{name:?} is not a context name: use letters, digits, `-`, `_`, `.`"
                )));
            }
            let given = server.trim();
            // `https://host:port/` and `https://host:port` are the same server.
            let server = match given.trim_end_matches('/') {
                trimmed if trimmed.ends_with(':') => given.to_owned(),
                trimmed => trimmed.to_owned(),
            };
            let uri: tonic::transport::Uri = server
                .parse()
                .map_err(|e| Failure::usage(format!("--server {server:?} is not a URL: {e}")))?;
            match uri.scheme_str() {
                Some("https") => {}
                Some("http") if ca_cert.is_none() && client_cert.is_none() => {}
                Some("http") => {
                    return Err(Failure::usage(
                        "--ca-cert and --client-cert need an https:// server",
                    ));
                }
                _ => {
                    return Err(Failure::usage(format!(
                        "--server {server:?} must start with http:// or https://"
                    )));
                }
            }
            if uri.host().is_none() {
                return Err(Failure::usage(format!("--server {server:?} has no host")));
            }
            let absolute = |p: Option<std::path::PathBuf>, flag: &str| -> Result<_, Failure> {
                p.map(|p| {
                    std::fs::canonicalize(&p)
                        .map_err(|e| Failure::usage(format!("{flag} {}: {e}", p.display())))
                })
                .transpose()
            };
            let context = Context {
                server,
                ca_cert: absolute(ca_cert, "--ca-cert")?,
                client_cert: absolute(client_cert, "--client-cert")?,
                client_key: absolute(client_key, "--client-key")?,
                ..Context::default()
            };
            let _lock = app.store.lock_and_reload()?;
            let config = &mut app.store.config;
            if config.contexts.contains_key(&name) && !force {
                return Err(Failure::usage(format!(
                    "a context named {name:?} exists; pass --force to replace it"
                )));
            }
            config.contexts.insert(name.clone(), context);
            let current = config.current_context.is_none()
                || !config
                    .contexts
                    .contains_key(config.current_context.as_deref().unwrap_or_default());
            if current {
                config.current_context = Some(name.clone());
            }
            app.store.save()?;
            eprintln!(
                "context {name:?} added{} ({})",
                if current { " and selected" } else { "" },
                app.store.path.display()
            );
            Ok(())
        }
        ContextCommand::Use { name } => {
            let _lock = app.store.lock_and_reload()?;
            if !app.store.config.contexts.contains_key(&name) {
                return Err(Failure::config(format!(
                    "no context named {name:?}\nhint: `orgctl context list` shows the contexts"
                )));
            }
            app.store.config.current_context = Some(name.clone());
            app.store.save()?;
            eprintln!("now using context {name:?}");
            Ok(())
        }
        ContextCommand::Delete { name } => {
            let _lock = app.store.lock_and_reload()?;
            if app.store.config.contexts.remove(&name).is_none() {
                return Err(Failure::config(format!("no context named {name:?}")));
            }
            if app.store.config.current_context.as_deref() == Some(name.as_str()) {
                app.store.config.current_context = None;
            }
            app.store.save()?;
            eprintln!("context {name:?} deleted");
            Ok(())
        }
        ContextCommand::List => {
            let current = app.store.config.current_context.clone();
            let rows: Vec<serde_json::Value> = app
                .store
                .config
                .contexts
                .iter()
                .map(|(name, c)| summary(name, c, current.as_deref() == Some(name.as_str())))
                .collect();
            match app.format {
                Format::Json => output::print_json(&serde_json::Value::Array(rows)),
                Format::Table => {
                    let mut table =
                        Table::new(["CURRENT", "NAME", "SERVER", "CREDENTIALS", "ORGANIZATION"]);
                    for r in &rows {
                        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                        table.rows.push(vec![
                            if r["current"] == true {
                                "*".into()
                            } else {
                                String::new()
                            },
                            s("name"),
                            s("server"),
                            or_dash(&s("credentials")),
                            or_dash(&s("organization")),
                        ]);
                    }
                    out!("{}", table.render());
                }
            }
            Ok(())
        }
        ContextCommand::Show { name } => {
            let name = match name {
                Some(n) => n,
                None => app.context_name()?,
            };
            let context = app
                .store
                .config
                .contexts
                .get(&name)
                .ok_or_else(|| Failure::config(format!("no context named {name:?}")))?;
            let current = app.store.config.current_context.as_deref() == Some(name.as_str());
            let mut value = summary(&name, context, current);
            if let Some(Credentials::Session(s)) = &context.credentials {
                value["userId"] = json!(s.user_id);
                value["email"] = json!(s.email);
                value["accessTokenExpireTime"] = json!(s.access_token_expire_time.to_rfc3339());
                value["refreshTokenExpireTime"] = json!(s.refresh_token_expire_time.to_rfc3339());
            }
            for (key, path) in [
                ("caCert", &context.ca_cert),
                ("clientCert", &context.client_cert),
                ("clientKey", &context.client_key),
            ] {
                if let Some(p) = path {
                    value[key] = json!(p.display().to_string());
                }
            }
            value["configFile"] = json!(app.store.path.display().to_string());
            output::print_one(app.format, &value, "");
            Ok(())
        }
        ContextCommand::SetOrg { organization_id } => {
            let org = organization_id.filter(|o| !o.is_empty());
            let shown = org.clone();
            app.with_context(|c| c.organization = org)?;
            match shown {
                Some(o) => eprintln!("default organization: {o}"),
                None => eprintln!("default organization cleared"),
            }
            Ok(())
        }
        ContextCommand::SetCredentials(args) => set_credentials(app, args),
    }
}

fn set_credentials(app: &mut App, args: SetCredentialsArgs) -> Result<(), Failure> {
    app.context_name()?;
    let credentials = if args.api_key_stdin {
        let key = secret_from_stdin(app, "API key")?;
        if !key.starts_with("opk_") {
            return Err(Failure::usage(
                "that is not an Orgplane API key (they start with `opk_`)",
            ));
        }
        Credentials::ApiKey { key }
    } else if args.service_token_stdin {
        Credentials::ServiceToken {
            token: secret_from_stdin(app, "service token")?,
        }
    } else if let Some(client_id) = args.client_id {
        Credentials::ServiceAccount {
            client_id,
            client_secret: secret_from_stdin(app, "client secret")?,
        }
    } else {
        return Err(Failure::usage(
            "pass --api-key-stdin, --service-token-stdin, or --client-id with --client-secret-stdin",
        ));
    };
    let described = credentials.describe();
    app.set_credentials(Some(credentials))?;
    eprintln!("context {:?} now uses {described}", app.context_name()?);
    Ok(())
}

fn summary(name: &str, c: &Context, current: bool) -> serde_json::Value {
    json!({
        "name": name,
        "current": current,
        "server": c.server,
        "credentials": c.credentials.as_ref().map(Credentials::describe).unwrap_or_default(),
        "organization": c.organization.clone().unwrap_or_default(),
    })
}
