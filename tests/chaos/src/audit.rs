//! Audit completeness (rule ORG-10): every mutating RPC of every service, enumerated from the
//! protos (mutating = not Get/List/Check/Watch/Batch and not one of the internal credential
//! exchanges), is run once successfully with its own `x-request-id`; the serving service must
//! then hold exactly one audit record with that request id, and that service's ListAuditEvents,
//! filtered by the request id, must return it; identity's records of a user's own account belong
//! to no organization and must not be listed there (they are read from its database only). A
//! mutating RPC the script does not run fails the suite, so new RPCs are covered. User-controlled
//! text (quotes, `<script>`, JSON-looking, non-ASCII) must come back from the audit log exactly
//! as sent; text with newlines or ANSI escapes is refused or stored faithfully, and never reaches
//! a log line raw. No audit record may contain a password, token or key secret.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use orgplane_platform::audit::row;
use orgplane_proto::billing::v1 as bill_api;
use orgplane_proto::identity::v1 as id_api;
use orgplane_proto::organization::v1 as org_api;
use orgplane_proto::organization::v1::OrgRole;
use orgplane_proto::workspace::v1 as ws_api;
use sea_orm::EntityTrait;
use tonic::Status;

use crate::Figures;
use crate::escalation::Protos;
use crate::harness::{CHILDREN, Harness, bearer_with_id, mask};

/// RPCs that change no audited state: credential exchanges between services; TestSsoConnection
/// (reads the provider) and StartSsoLogin (opens an unauthenticated attempt; the sign-in is
/// audited when CompleteSsoLogin completes it).
pub const NOT_MUTATIONS: [&str; 4] = [
    "AuthenticateApiKey",
    "IssueServiceToken",
    "TestSsoConnection",
    "StartSsoLogin",
];

/// Mutations this script cannot complete without an OpenID provider: CompleteSsoLogin's one
/// audit record (`session.create`) is proved by identity's suite against a real provider
/// (`sso_signin::id_13_sign_in_through_a_real_provider_creates_provisions_and_refuses_replays`).
pub const PROVEN_ELSEWHERE: [&str; 1] = ["CompleteSsoLogin"];

/// Identity's mutating RPCs whose records belong to an organization (and are listed by its
/// ListAuditEvents); its other mutations concern a user's own account.
pub const IDENTITY_ORG_SCOPED: [&str; 10] = [
    "CreateApiKey",
    "UpdateApiKey",
    "AdminResetPassword",
    "AdminResetMfa",
    "CreateSsoConnection",
    "UpdateSsoConnection",
    "DeleteSsoConnection",
    "CreateScimToken",
    "UpdateScimToken",
    "UpdateScimSettings",
];

/// Mutations that write more than one record (method, records, organizations they are in):
/// CreateChildOrganization writes `child_organization.create` in the operator's log and, in the
/// child's, `organization.create` and `invite.create` for its first owner's invite (rule ORG-13);
/// AcceptAccountImport (of the INDEPENDENT import the script makes) writes
/// `account.accept_import` in the importing organization's log and in the account's home's;
/// MergeOrganizations writes `organization.merge` in the prime's log and in the candidate's
/// (rule ORG-15, [`crate::merge::audit`]).
pub const SEVERAL_RECORDS: [(&str, usize, usize); 3] = [
    ("CreateChildOrganization", 3, 2),
    ("AcceptAccountImport", 2, 2),
    ("MergeOrganizations", 2, 2),
];

/// Method-name prefixes of read-only RPCs.
pub const READ_PREFIXES: [&str; 6] = ["Get", "List", "Check", "Watch", "Batch", "Lookup"];

/// User-controlled text every service must store and return unchanged.
pub const HOSTILE: &str =
    "Ünïcødé \"quoted\" 'single' <script>alert(1)</script> {\"a\": [1, 2,} \\ %s %n";

/// Text with a newline and an ANSI escape: refused, or stored faithfully and never raw in logs.
pub const CONTROL: &str = "line\nFAKE AUDIT LINE \u{1b}[31mred\u{1b}[0m";

/// The mutating RPCs of the services ([`crate::escalation::SERVICES`]), as
/// `/package.Service/Method` with their process.
pub fn mutating(protos: &Protos) -> Vec<(String, &'static str)> {
    protos
        .methods
        .iter()
        .filter(|(path, _, _, _, _)| {
            let m = path.rsplit('/').next().unwrap_or_default();
            !READ_PREFIXES.iter().any(|p| m.starts_with(p))
                && !NOT_MUTATIONS.contains(&m)
                && !PROVEN_ELSEWHERE.contains(&m)
        })
        .map(|(p, s, _, _, _)| (p.clone(), *s))
        .collect()
}

/// Runs the suite on a fresh setup.
pub async fn run(bin: &Path, postgres: Option<&str>) -> anyhow::Result<Figures> {
    let db = crate::db_label(postgres);
    let h = Harness::start(bin, postgres).await?;
    let result = scenario(&h, db).await;
    h.stop().await?;
    result
}

struct Run<'a> {
    h: &'a Harness,
    f: Figures,
    /// Method → (service, request ids of its successful calls).
    done: BTreeMap<String, (&'static str, Vec<String>)>,
    secrets: Vec<(String, String)>,
    /// Method → (organization, reader) whose ListAuditEvents lists its record, for the calls
    /// made outside the audited organization.
    listed_in: BTreeMap<String, (String, String)>,
}

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `message` with `x-request-id` and, when given, a bearer token.
fn req<T>(message: T, token: Option<&str>, request_id: &str) -> tonic::Request<T> {
    match token {
        Some(t) => bearer_with_id(message, t, request_id),
        None => {
            let mut r = tonic::Request::new(message);
            if let Ok(v) = request_id.parse() {
                r.metadata_mut().insert("x-request-id", v);
            }
            r.set_timeout(Duration::from_secs(10));
            r
        }
    }
}

impl Run<'_> {
    /// Notes a successful call of `method` on `service` with `request_id`; a failure is a
    /// suite failure (the script must make every mutation succeed).
    fn ok<T>(
        &mut self,
        service: &'static str,
        method: &str,
        request_id: &str,
        r: Result<tonic::Response<T>, Status>,
    ) -> Option<T> {
        match r {
            Ok(resp) => {
                self.done
                    .entry(method.to_owned())
                    .or_insert((service, Vec::new()))
                    .1
                    .push(request_id.to_owned());
                Some(resp.into_inner())
            }
            Err(s) => {
                self.f.failures.push(format!(
                    "{method} could not be run: {:?} {}",
                    s.code(),
                    s.message()
                ));
                None
            }
        }
    }

    fn secret(&mut self, what: &str, value: &str) {
        if value.len() >= 8 {
            self.secrets.push((what.to_owned(), value.to_owned()));
        }
    }

    async fn rows(&self, service: &str) -> anyhow::Result<Vec<row::Model>> {
        if service == "identity" {
            Ok(row::Entity::find().all(self.h.identity_db()?).await?)
        } else {
            let db = self.h.database(service).await?;
            let rows = row::Entity::find().all(&db).await?;
            let _ = db.close().await;
            Ok(rows)
        }
    }
}

async fn scenario(h: &Harness, db: &str) -> anyhow::Result<Figures> {
    let mut r = Run {
        h,
        f: Figures::new("audit-completeness", db),
        done: BTreeMap::new(),
        secrets: Vec::new(),
        listed_in: BTreeMap::new(),
    };
    let org = identity_and_org(&mut r).await?;
    second_factors(&mut r).await?;
    control_text(&mut r, &org).await?;
    // A merge of two other organizations of one owner (rule ORG-15), and its refusals.
    let merged = crate::merge::audit::run(h, &mut r.f).await?;
    for (method, id, resp) in merged.done {
        r.ok("organization", method, &id, resp);
        r.listed_in.insert(
            method.to_owned(),
            (merged.prime.clone(), crate::merge::audit::OWNER.to_owned()),
        );
    }
    r.f.notes = format!("{}; {}", r.f.notes, merged.notes);
    // Completeness: every mutating RPC ran, and left exactly one record in its service.
    let protos = Protos::load()?;
    let mut rows: BTreeMap<&str, Vec<row::Model>> = BTreeMap::new();
    for service in ["identity"].into_iter().chain(CHILDREN) {
        rows.insert(service, r.rows(service).await?);
    }
    let mut counted = 0;
    for (path, service) in mutating(&protos) {
        let method = path.rsplit('/').next().unwrap_or_default().to_owned();
        let Some((_, ids)) = r.done.get(&method) else {
            r.f.attacks_failed += 1;
            r.f.failures.push(format!(
                "{path}: a mutating RPC the audit script does not run (add it)"
            ));
            continue;
        };
        for id in ids {
            r.f.operations += 1;
            counted += 1;
            let mine: Vec<&row::Model> = rows
                .get(service)
                .map(|v| v.iter().filter(|x| &x.request_id == id).collect())
                .unwrap_or_default();
            let (records, orgs) = SEVERAL_RECORDS
                .iter()
                .find(|(m, _, _)| *m == method)
                .map_or((1, 1), |(_, r, o)| (*r, *o));
            let distinct_orgs: std::collections::BTreeSet<&str> =
                mine.iter().map(|x| x.organization_id.as_str()).collect();
            if mine.len() == records
                && distinct_orgs.len() == orgs
                && mine
                    .iter()
                    .all(|x| x.outcome == orgplane_proto::audit::v1::Outcome::Success as i32)
            {
                r.f.attacks_passed += 1;
            } else {
                r.f.attacks_failed += 1;
                let actions: Vec<String> = mine
                    .iter()
                    .map(|x| format!("{} ({})", x.action, x.outcome))
                    .collect();
                r.f.failures.push(format!(
                    "{method}: {} audit records in {service} for one call {actions:?}",
                    mine.len()
                ));
            }
        }
    }
    // No secret in any record of any service.
    let mut secret_hits = 0;
    for (service, list) in &rows {
        for x in list {
            let text = format!(
                "{} {} {} {} {}",
                x.actor_id,
                x.resource_id,
                x.error_reason,
                x.before_json.clone().unwrap_or_default(),
                x.after_json.clone().unwrap_or_default()
            );
            for (what, s) in &r.secrets {
                if text.contains(s.as_str()) {
                    secret_hits += 1;
                    r.f.leaks += 1;
                    r.f.failures
                        .push(format!("{service} audit {} contains the {what}", x.action));
                }
            }
        }
    }
    // The services' own read path agrees: ListAuditEvents filtered by request id returns the
    // one record (read by the current OWNER); identity lists its organization-scoped records and
    // none of a user's own account.
    let calls: Vec<(String, &'static str, String)> = r
        .done
        .iter()
        .flat_map(|(m, (svc, ids))| ids.iter().map(move |id| (m.clone(), *svc, id.clone())))
        .collect();
    let reader = h.user_token("user_audit_m1")?;
    for (method, service, id) in calls {
        let expected =
            usize::from(service != "identity" || IDENTITY_ORG_SCOPED.contains(&method.as_str()));
        let (list_org, list_reader) = match r.listed_in.get(&method) {
            Some((o, u)) => (o.clone(), h.user_token(u)?),
            None => (org.clone(), reader.clone()),
        };
        let start = std::time::Instant::now();
        let listed = loop {
            let n = list_by_request(h, service, &list_org, &id, &list_reader).await;
            match n {
                Ok(n) if n == expected => break Ok(n),
                _ if start.elapsed() < Duration::from_secs(5) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other,
            }
        };
        r.f.operations += 1;
        match listed {
            Ok(n) if n == expected => r.f.attacks_passed += 1,
            other => {
                r.f.attacks_failed += 1;
                r.f.failures.push(format!(
                    "{method}: {service} ListAuditEvents(request_id) → {other:?}, expected \
                     {expected} record(s)"
                ));
            }
        }
    }
    // User-controlled text comes back unchanged through ListAuditEvents.
    faithful(&mut r, &org).await?;
    // Raw control characters never reach a log line.
    for name in CHILDREN {
        for file in ["stdout.log", "stderr.log"] {
            let log =
                std::fs::read_to_string(h.dir.path().join(name).join(file)).unwrap_or_default();
            r.f.operations += 1;
            if log.contains("\nFAKE AUDIT LINE") || log.contains("\u{1b}[31mred") {
                r.f.attacks_failed += 1;
                r.f.failures
                    .push(format!("{name} {file}: user text broke a log line"));
            } else {
                r.f.attacks_passed += 1;
            }
        }
    }
    let records: usize = rows.values().map(Vec::len).sum();
    // For the record: consequences applied by other services (from events) under the same
    // request id are their own mutations there, written by the system or the event's actor.
    let mut downstream: BTreeMap<String, usize> = BTreeMap::new();
    for (method, (service, ids)) in &r.done {
        for (other, list) in &rows {
            if other == service {
                continue;
            }
            let n = list.iter().filter(|x| ids.contains(&x.request_id)).count();
            if n > 0 {
                *downstream.entry(format!("{method}→{other}")).or_default() += n;
            }
        }
    }
    r.f.notes = format!(
        "{} mutating RPCs from the protos, {counted} calls checked; {records} audit records \
         scanned for {} secrets ({secret_hits} hits); downstream records under the same request \
         id: {downstream:?}; {}",
        mutating(&protos).len(),
        r.secrets.len(),
        r.f.notes
    );
    Ok(r.f)
}

async fn identity_and_org(r: &mut Run<'_>) -> anyhow::Result<String> {
    let h = r.h;
    // Identity: sign-up to deletion.
    let email = "audit.owner@chaos.test";
    let password = "Audit-password-0001";
    r.secret("password", password);
    let id = rid();
    let resp = h
        .identity_client()
        .sign_up(req(
            id_api::SignUpRequest {
                email: email.into(),
                password: password.into(),
                display_name: HOSTILE.into(),
                account_type: id_api::AccountType::Business as i32,
                request_id: String::new(),
            },
            None,
            &id,
        ))
        .await;
    let user = r
        .ok("identity", "SignUp", &id, resp)
        .and_then(|u| u.user)
        .unwrap_or_default();
    let token = h
        .mail_value(email, "verify-email?token=")
        .unwrap_or_default();
    r.secret("verification token", &token);
    let id = rid();
    let resp = h
        .identity_client()
        .verify_email(req(id_api::VerifyEmailRequest { token }, None, &id))
        .await;
    r.ok("identity", "VerifyEmail", &id, resp);
    // A second, unverified account: resend its verification, and delete it at the end.
    let other = "audit.other@chaos.test";
    let resp = h
        .identity_client()
        .sign_up(req(
            id_api::SignUpRequest {
                email: other.into(),
                password: password.into(),
                display_name: "Other".into(),
                account_type: id_api::AccountType::Personal as i32,
                request_id: String::new(),
            },
            None,
            &rid(),
        ))
        .await?;
    let other_id = resp.into_inner().user.unwrap_or_default().id;
    let id = rid();
    let resp = h
        .identity_client()
        .resend_verification(req(
            id_api::ResendVerificationRequest {
                email: other.into(),
            },
            None,
            &id,
        ))
        .await;
    r.ok("identity", "ResendVerification", &id, resp);
    if let Some(t) = h.mail_value(other, "verify-email?token=") {
        r.secret("verification token (resent)", &t);
    }
    let id = rid();
    let resp = h
        .identity_client()
        .login(req(
            id_api::LoginRequest {
                email: email.into(),
                password: password.into(),
            },
            None,
            &id,
        ))
        .await;
    let tokens = r
        .ok("identity", "Login", &id, resp)
        .and_then(|l| l.tokens)
        .unwrap_or_default();
    r.secret("access token", &tokens.access_token);
    r.secret("refresh token", &tokens.refresh_token);
    let id = rid();
    let resp = h
        .identity_client()
        .refresh(req(
            id_api::RefreshRequest {
                refresh_token: tokens.refresh_token.clone(),
            },
            None,
            &id,
        ))
        .await;
    let tokens = r
        .ok("identity", "Refresh", &id, resp)
        .and_then(|t| t.tokens)
        .unwrap_or_default();
    r.secret("access token (refreshed)", &tokens.access_token);
    r.secret("refresh token (refreshed)", &tokens.refresh_token);
    let access = tokens.access_token.clone();
    let id = rid();
    let resp = h
        .identity_client()
        .reauthenticate(req(
            id_api::ReauthenticateRequest {
                password: password.into(),
                ..Default::default()
            },
            Some(&access),
            &id,
        ))
        .await;
    let mut tokens = tokens;
    if let Some(t) = r
        .ok("identity", "Reauthenticate", &id, resp)
        .and_then(|t| t.tokens)
    {
        r.secret("access token (reauthenticated)", &t.access_token);
        r.secret("refresh token (reauthenticated)", &t.refresh_token);
        tokens = t;
    }
    let access = tokens.access_token.clone();
    let id = rid();
    let resp = h
        .identity_client()
        .update_user(req(
            id_api::UpdateUserRequest {
                user: Some(id_api::User {
                    id: user.id.clone(),
                    display_name: format!("{HOSTILE} updated"),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            Some(&access),
            &id,
        ))
        .await;
    r.ok("identity", "UpdateUser", &id, resp);
    let id = rid();
    let resp = h
        .identity_client()
        .logout(req(
            id_api::LogoutRequest {
                refresh_token: tokens.refresh_token.clone(),
                all_sessions: false,
            },
            Some(&access),
            &id,
        ))
        .await;
    r.ok("identity", "Logout", &id, resp);
    let id = rid();
    let resp = h
        .identity_client()
        .request_password_reset(req(
            id_api::RequestPasswordResetRequest {
                email: email.into(),
            },
            None,
            &id,
        ))
        .await;
    r.ok("identity", "RequestPasswordReset", &id, resp);
    let reset = h
        .mail_value(email, "reset-password?token=")
        .unwrap_or_default();
    r.secret("reset token", &reset);
    let new_password = "Audit-password-0002";
    r.secret("new password", new_password);
    let id = rid();
    let resp = h
        .identity_client()
        .reset_password(req(
            id_api::ResetPasswordRequest {
                token: reset,
                new_password: new_password.into(),
            },
            None,
            &id,
        ))
        .await;
    r.ok("identity", "ResetPassword", &id, resp);

    // Organization, as the signed-up owner (a token with a fresh sign-in for step-up RPCs).
    let owner = user.id.clone();
    let owner_token = h.user_token(&owner)?;
    let id = rid();
    let resp = h
        .orgs()
        .create_organization(req(
            org_api::CreateOrganizationRequest {
                organization: Some(org_api::Organization {
                    name: HOSTILE.into(),
                    // An operator, so that the script can create a child (ORG-13).
                    kind: org_api::OrganizationKind::Operator as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    let org = r
        .ok("organization", "CreateOrganization", &id, resp)
        .and_then(|o| o.organization)
        .map(|o| o.id)
        .ok_or_else(|| anyhow::anyhow!("CreateOrganization failed: {:?}", r.f.failures))?;
    let id = rid();
    let renamed = format!("{HOSTILE} renamed");
    let resp = h
        .orgs()
        .update_organization(req(
            org_api::UpdateOrganizationRequest {
                organization: Some(org_api::Organization {
                    id: org.clone(),
                    name: renamed.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "UpdateOrganization", &id, resp);
    // Members by invite: m1 (becomes ADMIN, then OWNER), m2 (removed), m3 (workspace member).
    let mut revision = 0;
    for m in ["user_audit_m1", "user_audit_m2", "user_audit_m3"] {
        let mail = format!("{m}@chaos.test");
        h.seed_user(m, &mail).await?;
        let id = rid();
        let resp = h
            .orgs()
            .create_invite(req(
                org_api::CreateInviteRequest {
                    organization_id: org.clone(),
                    invite: Some(org_api::Invite {
                        email: mail,
                        role: OrgRole::Developer as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                Some(&owner_token),
                &id,
            ))
            .await;
        let invite = r
            .ok("organization", "CreateInvite", &id, resp)
            .and_then(|i| i.invite)
            .unwrap_or_default();
        let id = rid();
        let resp = h
            .orgs()
            .accept_invite(req(
                org_api::AcceptInviteRequest {
                    invite_id: invite.id,
                },
                Some(&h.user_token(m)?),
                &id,
            ))
            .await;
        if let Some(a) = r.ok("organization", "AcceptInvite", &id, resp) {
            revision = revision.max(a.revision);
        }
    }
    let id = rid();
    let resp = h
        .orgs()
        .create_invite(req(
            org_api::CreateInviteRequest {
                organization_id: org.clone(),
                invite: Some(org_api::Invite {
                    email: "audit.withdrawn@chaos.test".into(),
                    role: OrgRole::User as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    let withdrawn = r
        .ok("organization", "CreateInvite", &id, resp)
        .and_then(|i| i.invite)
        .unwrap_or_default()
        .id;
    let id = rid();
    let resp = h
        .orgs()
        .delete_invite(req(
            org_api::DeleteInviteRequest {
                invite_id: withdrawn,
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "DeleteInvite", &id, resp);
    let id = rid();
    let resp = h
        .orgs()
        .update_member_role(req(
            org_api::UpdateMemberRoleRequest {
                organization_id: org.clone(),
                user_id: "user_audit_m1".into(),
                role: OrgRole::Admin as i32,
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    if let Some(u) = r.ok("organization", "UpdateMemberRole", &id, resp) {
        revision = revision.max(u.revision);
    }
    let id = rid();
    let resp = h
        .orgs()
        .remove_member(req(
            org_api::RemoveMemberRequest {
                organization_id: org.clone(),
                user_id: "user_audit_m2".into(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    if let Some(u) = r.ok("organization", "RemoveMember", &id, resp) {
        revision = revision.max(u.revision);
    }
    let id = rid();
    let resp = h
        .orgs()
        .create_unit(req(
            org_api::CreateUnitRequest {
                organization_id: org.clone(),
                unit: Some(org_api::Unit {
                    name: HOSTILE.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    let unit = r
        .ok("organization", "CreateUnit", &id, resp)
        .and_then(|u| u.unit)
        .unwrap_or_default()
        .id;
    let id = rid();
    let resp = h
        .orgs()
        .update_unit(req(
            org_api::UpdateUnitRequest {
                unit: Some(org_api::Unit {
                    id: unit.clone(),
                    name: format!("{HOSTILE} unit"),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "UpdateUnit", &id, resp);
    let id = rid();
    let resp = h
        .orgs()
        .delete_unit(req(
            org_api::DeleteUnitRequest {
                unit_id: unit,
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "DeleteUnit", &id, resp);
    // Text with control characters: refused, or stored faithfully (checked in `faithful`).
    let resp = h
        .orgs()
        .create_unit(req(
            org_api::CreateUnitRequest {
                organization_id: org.clone(),
                unit: Some(org_api::Unit {
                    name: CONTROL.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(&owner_token),
            &rid(),
        ))
        .await;
    r.f.notes = format!(
        "a unit named with a newline and an ANSI escape → {:?}",
        resp.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok)
    );

    // Workspace, once it has applied the memberships.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let ready = h
            .workspaces()
            .check_access(bearer_with_id(
                ws_api::CheckAccessRequest {
                    organization_id: org.clone(),
                    subject: Some(ws_api::check_access_request::Subject::UserId(owner.clone())),
                    permission: ws_api::Permission::Read as i32,
                    min_organization_revision: revision,
                    ..Default::default()
                },
                &h.product_token()?,
                &rid(),
            ))
            .await;
        if ready.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = rid();
    let resp = h
        .workspaces()
        .create_workspace(req(
            ws_api::CreateWorkspaceRequest {
                organization_id: org.clone(),
                workspace: Some(ws_api::Workspace {
                    name: HOSTILE.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    let ws = r
        .ok("workspace", "CreateWorkspace", &id, resp)
        .and_then(|w| w.workspace)
        .unwrap_or_default()
        .id;
    let id = rid();
    let resp = h
        .workspaces()
        .update_workspace(req(
            ws_api::UpdateWorkspaceRequest {
                workspace: Some(ws_api::Workspace {
                    id: ws.clone(),
                    name: format!("{HOSTILE} ws"),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("workspace", "UpdateWorkspace", &id, resp);
    let id = rid();
    let resp = h
        .workspaces()
        .add_workspace_member(req(
            ws_api::AddWorkspaceMemberRequest {
                workspace_id: ws.clone(),
                user_id: "user_audit_m3".into(),
                role: ws_api::WorkspaceRole::Developer as i32,
                request_id: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("workspace", "AddWorkspaceMember", &id, resp);
    let id = rid();
    let resp = h
        .workspaces()
        .update_workspace_member(req(
            ws_api::UpdateWorkspaceMemberRequest {
                workspace_member: Some(ws_api::WorkspaceMember {
                    workspace_id: ws.clone(),
                    user_id: "user_audit_m3".into(),
                    role: ws_api::WorkspaceRole::User as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["role"]),
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("workspace", "UpdateWorkspaceMember", &id, resp);
    let id = rid();
    let resp = h
        .workspaces()
        .remove_workspace_member(req(
            ws_api::RemoveWorkspaceMemberRequest {
                workspace_id: ws.clone(),
                user_id: "user_audit_m3".into(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("workspace", "RemoveWorkspaceMember", &id, resp);
    let id = rid();
    let resp = h
        .workspaces()
        .archive_workspace(req(
            ws_api::ArchiveWorkspaceRequest {
                workspace_id: ws.clone(),
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("workspace", "ArchiveWorkspace", &id, resp);

    // Billing.
    let id = rid();
    let start = std::time::Instant::now();
    let resp = loop {
        let resp = h
            .billing()
            .update_billing_account(req(
                bill_api::UpdateBillingAccountRequest {
                    billing_account: Some(bill_api::BillingAccount {
                        organization_id: org.clone(),
                        seats: 7,
                        ..Default::default()
                    }),
                    update_mask: mask(&["seats"]),
                    etag: String::new(),
                },
                Some(&owner_token),
                &id,
            ))
            .await;
        match &resp {
            Err(s)
                if s.code() == tonic::Code::NotFound
                    && start.elapsed() < Duration::from_secs(10) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => break resp,
        }
    };
    r.ok("billing-access", "UpdateBillingAccount", &id, resp);
    let id = rid();
    let resp = h
        .billing()
        .record_usage(req(
            bill_api::RecordUsageRequest {
                records: vec![bill_api::UsageRecord {
                    organization_id: org.clone(),
                    model: "orgmodel-small-1".into(),
                    input_tokens: 10,
                    output_tokens: 5,
                    usage_time: Some(prost_types::Timestamp {
                        seconds: chrono::Utc::now().timestamp(),
                        nanos: 0,
                    }),
                    idempotency_key: rid(),
                    ..Default::default()
                }],
            },
            Some(&h.product_token()?),
            &id,
        ))
        .await;
    r.ok("billing-access", "RecordUsage", &id, resp);

    // Identity: API keys and admin resets in the organization.
    let id = rid();
    let resp = h
        .identity_client()
        .create_api_key(req(
            id_api::CreateApiKeyRequest {
                organization_id: org.clone(),
                api_key: Some(id_api::ApiKey {
                    kind: id_api::ApiKeyKind::Admin as i32,
                    name: HOSTILE.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    let key = r
        .ok("identity", "CreateApiKey", &id, resp)
        .unwrap_or_default();
    r.secret("API key secret", &key.secret);
    let id = rid();
    let resp = h
        .identity_client()
        .update_api_key(req(
            id_api::UpdateApiKeyRequest {
                api_key: Some(id_api::ApiKey {
                    id: key.api_key.unwrap_or_default().id,
                    name: format!("{HOSTILE} key"),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("identity", "UpdateApiKey", &id, resp);
    let id = rid();
    let resp = h
        .identity_client()
        .admin_reset_password(req(
            id_api::AdminResetPasswordRequest {
                organization_id: org.clone(),
                user_id: "user_audit_m1".into(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("identity", "AdminResetPassword", &id, resp);
    if let Some(t) = h.mail_value("user_audit_m1@chaos.test", "reset-password?token=") {
        r.secret("admin reset token", &t);
    }
    let id = rid();
    let resp = h
        .identity_client()
        .admin_reset_mfa(req(
            id_api::AdminResetMfaRequest {
                organization_id: org.clone(),
                user_id: "user_audit_m1".into(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("identity", "AdminResetMfa", &id, resp);
    let id = rid();
    let resp = h
        .orgs()
        .update_security_policy(req(
            org_api::UpdateSecurityPolicyRequest {
                security_policy: Some(org_api::SecurityPolicy {
                    organization_id: org.clone(),
                    reauthentication_max_age: Some(prost_types::Duration {
                        seconds: 600,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["reauthentication_max_age"]),
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "UpdateSecurityPolicy", &id, resp);
    domains(r, &org, &owner_token).await?;

    // SSO connections (rule ID-13): created, changed and removed, each audited in the
    // organization without the client secret.
    let sso_secret = "audit-sso-client-secret-0001";
    r.secret("SSO client secret", sso_secret);
    let id = rid();
    let resp = h
        .identity_client()
        .create_sso_connection(req(
            id_api::CreateSsoConnectionRequest {
                organization_id: org.clone(),
                sso_connection: Some(id_api::SsoConnection {
                    display_name: HOSTILE.into(),
                    oidc: Some(id_api::OidcSettings {
                        issuer: "https://idp.chaos.test".into(),
                        client_id: "audit-client".into(),
                        client_secret: sso_secret.into(),
                        redirect_uris: vec!["https://app.chaos.test/sso/callback".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    let sso = r
        .ok("identity", "CreateSsoConnection", &id, resp)
        .and_then(|c| c.sso_connection)
        .unwrap_or_default();
    let id = rid();
    let resp = h
        .identity_client()
        .update_sso_connection(req(
            id_api::UpdateSsoConnectionRequest {
                sso_connection: Some(id_api::SsoConnection {
                    id: sso.id.clone(),
                    enabled: true,
                    ..Default::default()
                }),
                update_mask: mask(&["enabled"]),
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("identity", "UpdateSsoConnection", &id, resp);
    let id = rid();
    let resp = h
        .identity_client()
        .delete_sso_connection(req(
            id_api::DeleteSsoConnectionRequest {
                sso_connection_id: sso.id,
                etag: String::new(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("identity", "DeleteSsoConnection", &id, resp);
    scim(r, &org, &owner_token).await?;
    // Accounts (rules ACC-1 … ACC-5), before the ownership moves: m1 is an ADMIN, m3 a member.
    let accounts =
        crate::accounts::audit::mutations(h, &org, &owner_token, "user_audit_m1", "user_audit_m3")
            .await?;
    for (method, id, resp) in accounts {
        r.ok("organization", method, &id, resp);
    }

    // Ownership, deletion and restoration (m1 is the new owner).
    let id = rid();
    let resp = h
        .orgs()
        .transfer_ownership(req(
            org_api::TransferOwnershipRequest {
                organization_id: org.clone(),
                new_owner_user_id: "user_audit_m1".into(),
            },
            Some(&owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "TransferOwnership", &id, resp);
    let m1 = h.user_token("user_audit_m1")?;
    let id = rid();
    let resp = h
        .orgs()
        .delete_organization(req(
            org_api::DeleteOrganizationRequest {
                organization_id: org.clone(),
                confirm_name: renamed,
                etag: String::new(),
            },
            Some(&m1),
            &id,
        ))
        .await;
    r.ok("organization", "DeleteOrganization", &id, resp);
    let id = rid();
    let resp = h
        .orgs()
        .undelete_organization(req(
            org_api::UndeleteOrganizationRequest {
                organization_id: org.clone(),
                etag: String::new(),
            },
            Some(&m1),
            &id,
        ))
        .await;
    r.ok("organization", "UndeleteOrganization", &id, resp);
    operators(r, &org, &m1).await;
    let id = rid();
    let resp = h
        .identity_client()
        .delete_user(req(
            id_api::DeleteUserRequest {
                user_id: other_id.clone(),
            },
            Some(&h.user_token(&other_id)?),
            &id,
        ))
        .await;
    r.ok("identity", "DeleteUser", &id, resp);
    Ok(org)
}

/// The operator RPCs (rule ORG-13), run by the organization's OWNER: a child organization (one
/// record in the operator's log, one in the child's) and the operator's branding.
async fn operators(r: &mut Run<'_>, org: &str, owner_token: &str) {
    let h = r.h;
    let id = rid();
    let resp = h
        .orgs()
        .create_child_organization(req(
            org_api::CreateChildOrganizationRequest {
                operator_organization_id: org.to_owned(),
                organization: Some(org_api::Organization {
                    name: format!("{HOSTILE} child"),
                    ..Default::default()
                }),
                owner_email: "child-owner@chaos.test".into(),
                request_id: String::new(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "CreateChildOrganization", &id, resp);
    let id = rid();
    let resp = h
        .orgs()
        .update_branding(req(
            org_api::UpdateBrandingRequest {
                branding: Some(org_api::Branding {
                    organization_id: org.to_owned(),
                    display_name: HOSTILE.into(),
                    mail_sender_name: "Chaos Operator".into(),
                    enforced_fields: vec!["mail_sender_name".into()],
                    ..Default::default()
                }),
                update_mask: mask(&["display_name", "mail_sender_name", "enforced_fields"]),
                etag: String::new(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "UpdateBranding", &id, resp);
}

/// Names with a newline and an ANSI escape in every service: each is refused with
/// INVALID_ARGUMENT or (checked by `faithful` and the log scan) stored exactly and never raw in
/// a log line.
/// Second factors (rules ID-10, ID-11) of a user of their own: TOTP and passkey enrollment,
/// recovery codes, a sign-in through the MFA challenge, and removal of a factor — each one audit
/// record in identity, none with a secret.
/// The domain RPCs (rule ORG-14), ProvisionMember (adding, then with `set_role` changing the
/// role) and DeprovisionMember, each once with its own request id.
async fn domains(r: &mut Run<'_>, org: &str, owner_token: &str) -> anyhow::Result<()> {
    let h = r.h;
    let id = rid();
    let resp = h
        .orgs()
        .create_domain(req(
            org_api::CreateDomainRequest {
                organization_id: org.into(),
                domain: Some(org_api::Domain {
                    domain_name: "audit-domain.chaos.test".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    let domain = r
        .ok("organization", "CreateDomain", &id, resp)
        .and_then(|d| d.domain)
        .unwrap_or_default();
    let id = rid();
    let resp = h
        .orgs()
        .update_domain(req(
            org_api::UpdateDomainRequest {
                domain: Some(org_api::Domain {
                    id: domain.id.clone(),
                    policy: org_api::DomainPolicy::Blocked as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["policy"]),
                etag: String::new(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "UpdateDomain", &id, resp);
    // No record is published: the check answers FAILED, which is still a recorded check.
    let id = rid();
    let resp = h
        .orgs()
        .verify_domain(req(
            org_api::VerifyDomainRequest {
                domain_id: domain.id.clone(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "VerifyDomain", &id, resp);
    let id = rid();
    let resp = h
        .orgs()
        .delete_domain(req(
            org_api::DeleteDomainRequest {
                domain_id: domain.id.clone(),
                etag: String::new(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    r.ok("organization", "DeleteDomain", &id, resp);
    h.seed_user("user_audit_jit", "jit@chaos.test").await?;
    let id = rid();
    let resp = h
        .orgs()
        .provision_member(req(
            org_api::ProvisionMemberRequest {
                organization_id: org.into(),
                user_id: "user_audit_jit".into(),
                role: OrgRole::User as i32,
                request_id: id.clone(),
                source: "scim".into(),
                set_role: false,
            },
            Some(&h.product_token()?),
            &id,
        ))
        .await;
    r.ok("organization", "ProvisionMember", &id, resp);
    // SCIM's group mappings (rule ID-14): the member's role set, then the member removed.
    let id = rid();
    let resp = h
        .orgs()
        .provision_member(req(
            org_api::ProvisionMemberRequest {
                organization_id: org.into(),
                user_id: "user_audit_jit".into(),
                role: OrgRole::Developer as i32,
                request_id: id.clone(),
                source: "scim".into(),
                set_role: true,
            },
            Some(&h.product_token()?),
            &id,
        ))
        .await;
    r.ok("organization", "ProvisionMember", &id, resp);
    let id = rid();
    let resp = h
        .orgs()
        .deprovision_member(req(
            org_api::DeprovisionMemberRequest {
                organization_id: org.into(),
                user_id: "user_audit_jit".into(),
                request_id: id.clone(),
                source: "scim".into(),
            },
            Some(&h.product_token()?),
            &id,
        ))
        .await;
    r.ok("organization", "DeprovisionMember", &id, resp);
    Ok(())
}

/// SCIM tokens and settings (rule ID-14): a token created (its secret must appear in no
/// record), changed, and the group-to-role settings changed, each audited in the organization.
async fn scim(r: &mut Run<'_>, org: &str, owner_token: &str) -> anyhow::Result<()> {
    let h = r.h;
    let id = rid();
    let resp = h
        .identity_client()
        .create_scim_token(req(
            id_api::CreateScimTokenRequest {
                organization_id: org.into(),
                scim_token: Some(id_api::ScimToken {
                    display_name: HOSTILE.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    let created = r
        .ok("identity", "CreateScimToken", &id, resp)
        .unwrap_or_default();
    r.secret("SCIM token", &created.token);
    let token = created.scim_token.unwrap_or_default();
    let id = rid();
    let resp = h
        .identity_client()
        .update_scim_token(req(
            id_api::UpdateScimTokenRequest {
                scim_token: Some(id_api::ScimToken {
                    id: token.id.clone(),
                    allow_unverified_user_names: true,
                    ..Default::default()
                }),
                update_mask: mask(&["allow_unverified_user_names"]),
                etag: String::new(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    r.ok("identity", "UpdateScimToken", &id, resp);
    let id = rid();
    let resp = h
        .identity_client()
        .update_scim_settings(req(
            id_api::UpdateScimSettingsRequest {
                scim_settings: Some(id_api::ScimSettings {
                    organization_id: org.into(),
                    group_mappings: vec![id_api::ScimGroupMapping {
                        group_display_name: HOSTILE.into(),
                        organization_role: OrgRole::Developer as i32,
                    }],
                    ..Default::default()
                }),
                update_mask: mask(&["group_mappings"]),
                etag: String::new(),
            },
            Some(owner_token),
            &id,
        ))
        .await;
    r.ok("identity", "UpdateScimSettings", &id, resp);
    Ok(())
}

async fn second_factors(r: &mut Run<'_>) -> anyhow::Result<()> {
    let h = r.h;
    let email = "audit.mfa@chaos.test";
    let password = "Audit-mfa-password-1";
    h.identity_client()
        .sign_up(req(
            id_api::SignUpRequest {
                email: email.into(),
                password: password.into(),
                display_name: "Audit MFA".into(),
                account_type: id_api::AccountType::Personal as i32,
                request_id: String::new(),
            },
            None,
            &rid(),
        ))
        .await?;
    let login = || {
        let mut client = h.identity_client();
        async move {
            client
                .login(req(
                    id_api::LoginRequest {
                        email: email.into(),
                        password: password.into(),
                    },
                    None,
                    &rid(),
                ))
                .await
        }
    };
    let access = login()
        .await?
        .into_inner()
        .tokens
        .unwrap_or_default()
        .access_token;
    let id = rid();
    let resp = h
        .identity_client()
        .start_totp_enrollment(req(
            id_api::StartTotpEnrollmentRequest {
                display_name: format!("{HOSTILE} phone"),
            },
            Some(&access),
            &id,
        ))
        .await;
    let started = r
        .ok("identity", "StartTotpEnrollment", &id, resp)
        .unwrap_or_default();
    r.secret("TOTP secret", &started.secret);
    let id = rid();
    let resp = h
        .identity_client()
        .confirm_totp_enrollment(req(
            id_api::ConfirmTotpEnrollmentRequest {
                factor_id: started.factor.map(|f| f.id).unwrap_or_default(),
                code: crate::secrets::totp_now(&started.secret)?,
            },
            Some(&access),
            &id,
        ))
        .await;
    let confirmed = r
        .ok("identity", "ConfirmTotpEnrollment", &id, resp)
        .unwrap_or_default();
    let totp_factor = confirmed.factor.map(|f| f.id).unwrap_or_default();
    let access = confirmed.tokens.unwrap_or_default().access_token;
    let id = rid();
    let resp = h
        .identity_client()
        .regenerate_recovery_codes(req(
            id_api::RegenerateRecoveryCodesRequest {},
            Some(&access),
            &id,
        ))
        .await;
    let codes = r
        .ok("identity", "RegenerateRecoveryCodes", &id, resp)
        .map(|c| c.recovery_codes)
        .unwrap_or_default();
    for c in &codes {
        r.secret("recovery code", c);
    }
    // A passkey, made by the software authenticator a browser would be.
    let id = rid();
    let resp = h
        .identity_client()
        .start_passkey_enrollment(req(
            id_api::StartPasskeyEnrollmentRequest {
                display_name: "Laptop".into(),
            },
            Some(&access),
            &id,
        ))
        .await;
    let passkey = r
        .ok("identity", "StartPasskeyEnrollment", &id, resp)
        .unwrap_or_default();
    let credential = software_passkey_registration(&passkey.creation_options_json)?;
    let id = rid();
    let resp = h
        .identity_client()
        .confirm_passkey_enrollment(req(
            id_api::ConfirmPasskeyEnrollmentRequest {
                factor_id: passkey.factor.map(|f| f.id).unwrap_or_default(),
                credential_json: credential,
            },
            Some(&access),
            &id,
        ))
        .await;
    let access = r
        .ok("identity", "ConfirmPasskeyEnrollment", &id, resp)
        .and_then(|c| c.tokens)
        .unwrap_or_default()
        .access_token;
    // Signing in again: a challenge, completed with a recovery code.
    let challenge = login()
        .await?
        .into_inner()
        .mfa_challenge
        .unwrap_or_default();
    r.secret("MFA challenge id", &challenge.challenge_id);
    let id = rid();
    let resp = h
        .identity_client()
        .verify_mfa_challenge(req(
            id_api::VerifyMfaChallengeRequest {
                challenge_id: challenge.challenge_id,
                recovery_code: codes.first().cloned().unwrap_or_default(),
                ..Default::default()
            },
            None,
            &id,
        ))
        .await;
    if let Some(t) = r
        .ok("identity", "VerifyMfaChallenge", &id, resp)
        .and_then(|v| v.tokens)
    {
        r.secret("access token (challenge)", &t.access_token);
        r.secret("refresh token (challenge)", &t.refresh_token);
    }
    let id = rid();
    let resp = h
        .identity_client()
        .delete_mfa_factor(req(
            id_api::DeleteMfaFactorRequest {
                factor_id: totp_factor,
            },
            Some(&access),
            &id,
        ))
        .await;
    r.ok("identity", "DeleteMfaFactor", &id, resp);
    Ok(())
}

/// The registration response (browser JSON) of a fresh software passkey for creation options
/// `options_json`, at the development origin.
fn software_passkey_registration(options_json: &str) -> anyhow::Result<String> {
    use webauthn_authenticator_rs::prelude::{
        CreationChallengeResponse, Url, WebauthnAuthenticator,
    };
    use webauthn_authenticator_rs::softpasskey::SoftPasskey;
    let public_key: serde_json::Value = serde_json::from_str(options_json)?;
    let options: CreationChallengeResponse =
        serde_json::from_value(serde_json::json!({ "publicKey": public_key }))?;
    let mut key = SoftPasskey::new(true);
    let response = key
        .do_registration(Url::parse("http://localhost:3000")?, options)
        .map_err(|e| anyhow::anyhow!("software passkey: {e:?}"))?;
    Ok(serde_json::to_string(&response)?)
}

async fn control_text(r: &mut Run<'_>, org: &str) -> anyhow::Result<()> {
    let h = r.h;
    let token = h.user_token("user_audit_m1")?;
    let mut codes = Vec::new();
    let ws = h
        .workspaces()
        .create_workspace(bearer_with_id(
            ws_api::CreateWorkspaceRequest {
                organization_id: org.into(),
                workspace: Some(ws_api::Workspace {
                    name: CONTROL.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
            &rid(),
        ))
        .await;
    codes.push(("CreateWorkspace", ws.map(|_| ())));
    let key = h
        .identity_client()
        .create_api_key(bearer_with_id(
            id_api::CreateApiKeyRequest {
                organization_id: org.into(),
                api_key: Some(id_api::ApiKey {
                    kind: id_api::ApiKeyKind::Admin as i32,
                    name: CONTROL.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
            &rid(),
        ))
        .await;
    if let Ok(k) = &key {
        r.secret("API key secret (control-text key)", &k.get_ref().secret);
    }
    codes.push(("CreateApiKey", key.map(|_| ())));
    let user = h
        .identity_client()
        .update_user(bearer_with_id(
            id_api::UpdateUserRequest {
                user: Some(id_api::User {
                    id: "user_audit_m1".into(),
                    display_name: CONTROL.into(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                etag: String::new(),
            },
            &token,
            &rid(),
        ))
        .await;
    codes.push(("UpdateUser", user.map(|_| ())));
    let billing = h
        .billing()
        .update_billing_account(bearer_with_id(
            bill_api::UpdateBillingAccountRequest {
                billing_account: Some(bill_api::BillingAccount {
                    organization_id: org.into(),
                    billing_email: format!("{CONTROL}@chaos.test"),
                    ..Default::default()
                }),
                update_mask: mask(&["billing_email"]),
                etag: String::new(),
            },
            &token,
            &rid(),
        ))
        .await;
    codes.push(("UpdateBillingAccount email", billing.map(|_| ())));
    let mut summary = Vec::new();
    for (what, result) in codes {
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        r.f.operations += 1;
        if matches!(code, tonic::Code::InvalidArgument | tonic::Code::Ok) {
            r.f.attacks_passed += 1;
        } else {
            r.f.attacks_failed += 1;
            r.f.failures
                .push(format!("{what} with control characters: {code:?}"));
        }
        summary.push(format!("{what} → {code:?}"));
    }
    r.f.notes = format!("{}; {}", r.f.notes, summary.join(", "));
    Ok(())
}

/// How many records `service`'s ListAuditEvents returns for `request_id` in `org`.
async fn list_by_request(
    h: &Harness,
    service: &str,
    org: &str,
    request_id: &str,
    token: &str,
) -> Result<usize, tonic::Code> {
    let filter = Some(orgplane_proto::audit::v1::AuditEventFilter {
        request_id: request_id.into(),
        ..Default::default()
    });
    let rid = rid();
    let r = match service {
        "identity" => h
            .identity_client()
            .list_audit_events(bearer_with_id(
                id_api::ListAuditEventsRequest {
                    organization_id: org.into(),
                    page_size: 100,
                    page_token: String::new(),
                    filter,
                },
                token,
                &rid,
            ))
            .await
            .map(|x| x.into_inner().audit_events.len()),
        "organization" => h
            .orgs()
            .list_audit_events(bearer_with_id(
                org_api::ListAuditEventsRequest {
                    organization_id: org.into(),
                    page_size: 100,
                    page_token: String::new(),
                    filter,
                },
                token,
                &rid,
            ))
            .await
            .map(|x| x.into_inner().audit_events.len()),
        "workspace" => h
            .workspaces()
            .list_audit_events(bearer_with_id(
                ws_api::ListAuditEventsRequest {
                    organization_id: org.into(),
                    page_size: 100,
                    page_token: String::new(),
                    filter,
                },
                token,
                &rid,
            ))
            .await
            .map(|x| x.into_inner().audit_events.len()),
        _ => h
            .billing()
            .list_audit_events(bearer_with_id(
                bill_api::ListAuditEventsRequest {
                    organization_id: org.into(),
                    page_size: 100,
                    page_token: String::new(),
                    filter,
                },
                token,
                &rid,
            ))
            .await
            .map(|x| x.into_inner().audit_events.len()),
    };
    r.map_err(|s| s.code())
}

/// The `name`/`display_name` of an audit record's `after` image.
fn after_name(after: &Option<prost_types::Struct>) -> Option<String> {
    use prost_types::value::Kind;
    let fields = &after.as_ref()?.fields;
    ["name", "displayName"]
        .iter()
        .find_map(|k| match &fields.get(*k)?.kind {
            Some(Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

async fn faithful(r: &mut Run<'_>, org: &str) -> anyhow::Result<()> {
    let h = r.h;
    // A current OWNER reads every service's log.
    let token = h.user_token("user_audit_m1")?;
    let mut names: BTreeSet<String> = BTreeSet::new();
    let o = h
        .orgs()
        .list_audit_events(bearer_with_id(
            org_api::ListAuditEventsRequest {
                organization_id: org.into(),
                page_size: 1000,
                ..Default::default()
            },
            &token,
            &rid(),
        ))
        .await?
        .into_inner()
        .audit_events;
    let w = h
        .workspaces()
        .list_audit_events(bearer_with_id(
            ws_api::ListAuditEventsRequest {
                organization_id: org.into(),
                page_size: 1000,
                ..Default::default()
            },
            &token,
            &rid(),
        ))
        .await?
        .into_inner()
        .audit_events;
    let i = h
        .identity_client()
        .list_audit_events(bearer_with_id(
            id_api::ListAuditEventsRequest {
                organization_id: org.into(),
                page_size: 1000,
                ..Default::default()
            },
            &token,
            &rid(),
        ))
        .await?
        .into_inner()
        .audit_events;
    for e in o.iter().chain(w.iter()).chain(i.iter()) {
        if let Some(n) = after_name(&e.after) {
            names.insert(n);
        }
    }
    // Identity's account-level records (user.update) belong to no organization: from its
    // database (proto3 JSON in `after_json`).
    for x in r.rows("identity").await? {
        if !x.organization_id.is_empty() {
            continue;
        }
        if let Some(j) = x.after_json
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&j)
        {
            for k in ["name", "displayName"] {
                if let Some(s) = v.get(k).and_then(|s| s.as_str()) {
                    names.insert(s.to_owned());
                }
            }
        }
    }
    for (what, want) in [
        ("organization.create", HOSTILE.to_owned()),
        ("organization.update", format!("{HOSTILE} renamed")),
        ("unit.update", format!("{HOSTILE} unit")),
        ("workspace.update", format!("{HOSTILE} ws")),
        ("user.update (identity)", format!("{HOSTILE} updated")),
        ("api_key.update (identity)", format!("{HOSTILE} key")),
    ] {
        r.f.operations += 1;
        if names.contains(&want) {
            r.f.attacks_passed += 1;
        } else {
            r.f.attacks_failed += 1;
            r.f.failures.push(format!(
                "{what}: user-controlled text not returned exactly by the audit log"
            ));
        }
    }
    // Control characters, if they were accepted, are stored as sent.
    if names
        .iter()
        .any(|n| n.contains("FAKE AUDIT LINE") && n != CONTROL)
    {
        r.f.failures
            .push("text with control characters was altered in the audit log".into());
    }
    Ok(())
}
