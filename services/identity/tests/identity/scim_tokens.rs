//! SCIM tokens and settings over real gRPC (rule ID-14): a token's secret is shown once and
//! stored as a digest; who may manage tokens (OWNER/ADMIN with a recent sign-in); the limit of
//! 25; a disabled token or a deleted organization is refused at once by the authentication every
//! SCIM request runs; the group-to-role settings' validation and etag; audit records without
//! secrets. SQLite, and the core flow on PostgreSQL.

use super::*;

use orgplane_identity::store::entity::scim_token;
use sea_orm::EntityTrait;

// ----- helpers ----------------------------------------------------------------------------------

async fn create_scim_token(
    rig: &Rig,
    token: &str,
    org: &str,
    request_id: &str,
) -> Result<CreateScimTokenResponse, tonic::Status> {
    rig.client()
        .create_scim_token(bearer(
            CreateScimTokenRequest {
                organization_id: org.into(),
                scim_token: Some(ScimToken {
                    display_name: "Okta".into(),
                    ..Default::default()
                }),
                request_id: request_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn list_scim_tokens(
    rig: &Rig,
    token: &str,
    org: &str,
    page_size: i32,
    page_token: &str,
) -> Result<ListScimTokensResponse, tonic::Status> {
    rig.client()
        .list_scim_tokens(bearer(
            ListScimTokensRequest {
                organization_id: org.into(),
                page_size,
                page_token: page_token.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn update_scim_token(
    rig: &Rig,
    token: &str,
    patch: ScimToken,
    paths: &[&str],
    etag: &str,
) -> Result<ScimToken, tonic::Status> {
    rig.client()
        .update_scim_token(bearer(
            UpdateScimTokenRequest {
                scim_token: Some(patch),
                update_mask: mask(paths),
                etag: etag.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().scim_token.unwrap())
}

async fn get_settings(rig: &Rig, token: &str, org: &str) -> Result<ScimSettings, tonic::Status> {
    rig.client()
        .get_scim_settings(bearer(
            GetScimSettingsRequest {
                organization_id: org.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().scim_settings.unwrap())
}

async fn update_settings(
    rig: &Rig,
    token: &str,
    settings: ScimSettings,
    paths: &[&str],
    etag: &str,
) -> Result<UpdateScimSettingsResponse, tonic::Status> {
    rig.client()
        .update_scim_settings(bearer(
            UpdateScimSettingsRequest {
                scim_settings: Some(settings),
                update_mask: mask(paths),
                etag: etag.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

fn mapping(group: &str, role: OrgRole) -> ScimGroupMapping {
    ScimGroupMapping {
        group_display_name: group.into(),
        organization_role: role as i32,
    }
}

/// The SCIM authentication every SCIM request runs, as its reason on refusal.
async fn scim_auth(rig: &Rig, secret: &str) -> Result<String, String> {
    rig.identity
        .scim_principal(secret)
        .await
        .map(|p| p.token_id)
        .map_err(|e| {
            let status: tonic::Status = e.into();
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            reason_of(&status).unwrap_or_default()
        })
}

/// Every audit record of `org` as JSON text, newest first.
async fn audit_texts(rig: &Rig, token: &str, org: &str) -> Vec<(String, String)> {
    let page = audit_page(rig, (token, false), org, Default::default(), 1000, "")
        .await
        .unwrap();
    page.audit_events
        .iter()
        .map(|e| (e.action.clone(), format!("{e:?}")))
        .collect()
}

// ----- tokens -----------------------------------------------------------------------------------

async fn id_14_token_flow(rig: &Rig) {
    let (owner, token, _) = rig.user("owner@scim-flow.test").await;
    rig.create_org("org_a", &owner.id).await;
    let created = create_scim_token(rig, &token, "org_a", "req-1")
        .await
        .unwrap();
    let secret = created.token.clone();
    let t = created.scim_token.unwrap();
    assert!(
        secret.starts_with("opscim_") && secret.len() == 7 + 43,
        "{secret}"
    );
    assert!(t.id.starts_with("scimt_"));
    assert_eq!(
        (
            t.organization_id.as_str(),
            t.state,
            t.creator_user_id.as_str()
        ),
        ("org_a", ScimTokenState::Active as i32, owner.id.as_str())
    );
    assert_eq!(
        t.partial_token_hint,
        format!("opscim_…{}", &secret[secret.len() - 4..])
    );
    assert!(!t.allow_unverified_user_names && t.last_used_time.is_none());
    // A retry with the request id: the same token, the secret never again.
    let again = create_scim_token(rig, &token, "org_a", "req-1")
        .await
        .unwrap();
    assert_eq!(again.scim_token.unwrap().id, t.id);
    assert!(again.token.is_empty());
    // Stored as a digest only.
    let rows = scim_token::Entity::find().all(rig.db()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].token_hash,
        orgplane_identity::crypto::sha256_hex(&secret)
    );
    assert!(!format!("{:?}", rows[0]).contains(&secret[7..]));
    // Listed, never with the secret.
    let listed = list_scim_tokens(rig, &token, "org_a", 0, "").await.unwrap();
    assert_eq!(listed.scim_tokens.len(), 1);
    assert!(!format!("{listed:?}").contains(&secret[7..]));
    // Accepted; the use is recorded.
    assert_eq!(scim_auth(rig, &secret).await, Ok(t.id.clone()));
    let used = list_scim_tokens(rig, &token, "org_a", 0, "").await.unwrap();
    assert!(used.scim_tokens[0].last_used_time.is_some());
    // Unknown, malformed, truncated secrets: one answer.
    let unknown = format!("opscim_{}", "A".repeat(43));
    for bad in [
        unknown.as_str(),
        "",
        "opscim_",
        &secret[..secret.len() - 1],
        "Bearer x",
        &secret.replace("opscim_", "opk_"),
    ] {
        assert_eq!(
            scim_auth(rig, bad).await,
            Err("SCIM_TOKEN_INVALID".into()),
            "{bad}"
        );
    }
    // Disabled: refused from the next request on; enabled: accepted again.
    let patch = |state: ScimTokenState| ScimToken {
        id: t.id.clone(),
        state: state as i32,
        ..Default::default()
    };
    let disabled = update_scim_token(
        rig,
        &token,
        patch(ScimTokenState::Disabled),
        &["state"],
        &t.etag,
    )
    .await
    .unwrap();
    assert_eq!(disabled.state, ScimTokenState::Disabled as i32);
    assert_eq!(
        scim_auth(rig, &secret).await,
        Err("SCIM_TOKEN_INVALID".into())
    );
    // The etag read before the change is stale now.
    let err = update_scim_token(
        rig,
        &token,
        patch(ScimTokenState::Active),
        &["state"],
        &t.etag,
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let enabled = update_scim_token(
        rig,
        &token,
        patch(ScimTokenState::Active),
        &["state"],
        &disabled.etag,
    )
    .await
    .unwrap();
    assert_eq!(scim_auth(rig, &secret).await, Ok(t.id.clone()));
    // The verified-domain requirement, and a rename.
    let relaxed = update_scim_token(
        rig,
        &token,
        ScimToken {
            id: t.id.clone(),
            display_name: "Conformance".into(),
            allow_unverified_user_names: true,
            ..Default::default()
        },
        &["allow_unverified_user_names", "display_name"],
        &enabled.etag,
    )
    .await
    .unwrap();
    assert!(relaxed.allow_unverified_user_names);
    assert_eq!(relaxed.display_name, "Conformance");
    assert!(
        rig.identity
            .scim_principal(&secret)
            .await
            .unwrap()
            .allow_unverified_user_names
    );
    for (paths, patch) in [
        (vec!["secret"], patch(ScimTokenState::Active)),
        (vec![], patch(ScimTokenState::Active)),
        (vec!["state"], patch(ScimTokenState::Unspecified)),
        (
            vec!["display_name"],
            ScimToken {
                id: t.id.clone(),
                ..Default::default()
            },
        ),
    ] {
        let err = update_scim_token(rig, &token, patch, &paths, "")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{paths:?}: {err:?}");
    }
    // Audited, with the change visible, and without the secret anywhere.
    let records = audit_texts(rig, &token, "org_a").await;
    let actions: Vec<&str> = records.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "scim_token.created")
            .count(),
        1,
        "{actions:?}"
    );
    let page = audit_page(rig, (&token, false), "org_a", Default::default(), 1000, "")
        .await
        .unwrap();
    let relaxing = page
        .audit_events
        .iter()
        .find(|e| {
            e.action == "scim_token.updated"
                && e.after.as_ref().is_some_and(|a| {
                    struct_json(a)["allowUnverifiedUserNames"] == serde_json::Value::Bool(true)
                })
                && e.before
                    .as_ref()
                    .is_some_and(|b| struct_json(b).get("allowUnverifiedUserNames").is_none())
        })
        .expect("the relaxation is in the audit log with its before and after");
    assert_eq!(relaxing.resource_id, t.id);
    for (action, text) in &records {
        assert!(!text.contains(&secret[7..]), "{action}: {text}");
    }
    let logs = String::from_utf8_lossy(&log_buffer().lock().unwrap()).to_string();
    assert!(!logs.contains(&secret[7..]), "the secret is in the logs");
    // The organization deleted: its tokens are refused.
    rig.org_event(Payload::OrganizationDeleted(OrganizationDeleted {
        organization_id: "org_a".into(),
        purge_time: None,
    }))
    .await;
    assert_eq!(
        scim_auth(rig, &secret).await,
        Err("SCIM_TOKEN_INVALID".into())
    );
}

#[tokio::test]
async fn id_14_scim_token_is_shown_once_stored_as_digest_disabled_at_once_and_audited() {
    id_14_token_flow(&Rig::sqlite().await).await;
}

#[tokio::test]
async fn id_14_scim_token_flow_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    };
    id_14_token_flow(&Rig::start(db, |_| {}).await).await;
}

#[tokio::test]
async fn id_14_scim_token_admin_may_developer_may_not_stale_sign_in_must_step_up_others_see_nothing()
 {
    let rig = Rig::with(|c| c.step_up_max_age_secs = 2).await;
    let (owner, owner_token, _) = rig.user("owner@scim-roles.test").await;
    let (admin, admin_token, _) = rig.user("admin@scim-roles.test").await;
    let (dev, dev_token, _) = rig.user("dev@scim-roles.test").await;
    let (stranger, stranger_token, _) = rig.user("owner@elsewhere.test").await;
    rig.create_org("org_a", &owner.id).await;
    rig.create_org("org_b", &stranger.id).await;
    rig.add_member("org_a", &admin.id, OrgRole::Admin).await;
    rig.add_member("org_a", &dev.id, OrgRole::Developer).await;
    let by_admin = create_scim_token(&rig, &admin_token, "org_a", "")
        .await
        .unwrap();
    assert_eq!(
        by_admin.scim_token.as_ref().unwrap().creator_user_id,
        admin.id
    );
    let id = by_admin.scim_token.unwrap().id;
    let err = create_scim_token(&rig, &dev_token, "org_a", "")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    let err = list_scim_tokens(&rig, &dev_token, "org_a", 0, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    let err = get_settings(&rig, &dev_token, "org_a").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    // Another organization's owner: nothing exists for them.
    let err = create_scim_token(&rig, &stranger_token, "org_a", "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = list_scim_tokens(&rig, &stranger_token, "org_a", 0, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = update_scim_token(
        &rig,
        &stranger_token,
        ScimToken {
            id: id.clone(),
            state: ScimTokenState::Disabled as i32,
            ..Default::default()
        },
        &["state"],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = get_settings(&rig, &stranger_token, "org_a")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        list_scim_tokens(&rig, &stranger_token, "org_b", 0, "")
            .await
            .unwrap()
            .scim_tokens
            .is_empty()
    );
    // A sign-in older than the step-up age: changes need a fresh one; reading does not.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let err = create_scim_token(&rig, &owner_token, "org_a", "")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    let err = update_scim_token(
        &rig,
        &owner_token,
        ScimToken {
            id: id.clone(),
            state: ScimTokenState::Disabled as i32,
            ..Default::default()
        },
        &["state"],
        "",
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    let err = update_settings(
        &rig,
        &owner_token,
        ScimSettings {
            organization_id: "org_a".into(),
            default_role: OrgRole::Developer as i32,
            ..Default::default()
        },
        &["default_role"],
        "",
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "REAUTHENTICATION_REQUIRED");
    assert_eq!(
        list_scim_tokens(&rig, &owner_token, "org_a", 0, "")
            .await
            .unwrap()
            .scim_tokens
            .len(),
        1
    );
    get_settings(&rig, &owner_token, "org_a").await.unwrap();
    // The refusals of members are audited, without a secret.
    let records = audit_texts(&rig, &admin_token, "org_a").await;
    assert!(
        records
            .iter()
            .any(|(a, t)| a == "scim_token.created" && t.contains("INSUFFICIENT_ROLE")),
        "{records:?}"
    );
}

#[tokio::test]
async fn id_14_scim_token_limit_is_25_per_organization_disabled_ones_count_pages_oldest_first() {
    let rig = Rig::sqlite().await;
    let (owner, token, _) = rig.user("owner@scim-limit.test").await;
    rig.create_org("org_a", &owner.id).await;
    let mut ids = Vec::new();
    for _ in 0..25 {
        let t = create_scim_token(&rig, &token, "org_a", "").await.unwrap();
        ids.push(t.scim_token.unwrap());
    }
    update_scim_token(
        &rig,
        &token,
        ScimToken {
            id: ids[0].id.clone(),
            state: ScimTokenState::Disabled as i32,
            ..Default::default()
        },
        &["state"],
        "",
    )
    .await
    .unwrap();
    let err = create_scim_token(&rig, &token, "org_a", "")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "SCIM_TOKEN_LIMIT");
    // Another organization has its own 25.
    rig.create_org("org_b", &owner.id).await;
    create_scim_token(&rig, &token, "org_b", "").await.unwrap();
    // Pages of 10, oldest first, every token once.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list_scim_tokens(&rig, &token, "org_a", 10, &page_token)
            .await
            .unwrap();
        seen.extend(page.scim_tokens.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, ids.iter().map(|t| t.id.clone()).collect::<Vec<_>>());
    let err = list_scim_tokens(&rig, &token, "org_b", 10, &{
        list_scim_tokens(&rig, &token, "org_a", 10, "")
            .await
            .unwrap()
            .next_page_token
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a token of another list");
}

// ----- settings ---------------------------------------------------------------------------------

#[tokio::test]
async fn id_14_scim_settings_default_to_user_validate_mappings_and_check_the_etag() {
    let rig = Rig::sqlite().await;
    let (owner, token, _) = rig.user("owner@scim-settings.test").await;
    rig.create_org("org_a", &owner.id).await;
    let defaults = get_settings(&rig, &token, "org_a").await.unwrap();
    assert_eq!(defaults.default_role, OrgRole::User as i32);
    assert!(defaults.group_mappings.is_empty() && defaults.update_time.is_none());
    let settings = |mappings: Vec<ScimGroupMapping>, default_role: OrgRole| ScimSettings {
        organization_id: "org_a".into(),
        group_mappings: mappings,
        default_role: default_role as i32,
        ..Default::default()
    };
    let refused: Vec<(ScimSettings, Vec<&str>)> = vec![
        (
            settings(vec![mapping("Owners", OrgRole::Owner)], OrgRole::User),
            vec!["group_mappings"],
        ),
        (
            settings(vec![mapping("Admins", OrgRole::Unspecified)], OrgRole::User),
            vec!["group_mappings"],
        ),
        (
            settings(
                vec![
                    mapping("Admins", OrgRole::Admin),
                    mapping("ADMINS", OrgRole::User),
                ],
                OrgRole::User,
            ),
            vec!["group_mappings"],
        ),
        (
            settings(
                (0..101)
                    .map(|i| mapping(&format!("g{i}"), OrgRole::User))
                    .collect(),
                OrgRole::User,
            ),
            vec!["group_mappings"],
        ),
        (
            settings(
                vec![mapping(&"x".repeat(257), OrgRole::User)],
                OrgRole::User,
            ),
            vec!["group_mappings"],
        ),
        (
            settings(vec![mapping("", OrgRole::User)], OrgRole::User),
            vec!["group_mappings"],
        ),
        (settings(vec![], OrgRole::Owner), vec!["default_role"]),
        (settings(vec![], OrgRole::Unspecified), vec!["default_role"]),
        (settings(vec![], OrgRole::User), vec!["organization_id"]),
        (settings(vec![], OrgRole::User), vec![]),
    ];
    for (s, paths) in refused {
        let err = update_settings(&rig, &token, s, &paths, "")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{paths:?}: {err:?}");
    }
    let mut many: Vec<ScimGroupMapping> = (0..99)
        .map(|i| mapping(&format!("g{i}"), OrgRole::User))
        .collect();
    many.insert(0, mapping("Engineers", OrgRole::Developer));
    let changed = update_settings(
        &rig,
        &token,
        settings(many, OrgRole::Billing),
        &["group_mappings", "default_role"],
        &defaults.etag,
    )
    .await
    .unwrap();
    assert_eq!(changed.roles_changed, 0, "no provisioned users yet");
    let s = changed.scim_settings.unwrap();
    assert_eq!(s.group_mappings.len(), 100);
    assert_eq!(
        s.group_mappings[0],
        mapping("Engineers", OrgRole::Developer)
    );
    assert_eq!(s.default_role, OrgRole::Billing as i32);
    assert!(s.update_time.is_some());
    assert_ne!(s.etag, defaults.etag);
    assert_eq!(get_settings(&rig, &token, "org_a").await.unwrap(), s);
    // The defaults' etag is stale now; only the mask's fields change.
    let err = update_settings(
        &rig,
        &token,
        settings(vec![], OrgRole::User),
        &["default_role"],
        &defaults.etag,
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let only_role = update_settings(
        &rig,
        &token,
        settings(vec![], OrgRole::Admin),
        &["default_role"],
        &s.etag,
    )
    .await
    .unwrap()
    .scim_settings
    .unwrap();
    assert_eq!(only_role.group_mappings.len(), 100);
    assert_eq!(only_role.default_role, OrgRole::Admin as i32);
    // Provisioning reads what was stored: the first mapping in order, names ignoring case.
    let rules = orgplane_identity::app::scim::settings::load(rig.db(), "org_a")
        .await
        .unwrap();
    assert_eq!(rules.role_for(["g5", "engineers"]), OrgRole::Developer);
    assert_eq!(rules.role_for(["sales"]), OrgRole::Admin);
    let fresh = orgplane_identity::app::scim::settings::load(rig.db(), "org_other")
        .await
        .unwrap();
    assert_eq!(fresh.role_for(["engineers"]), OrgRole::User);
    // Audited with before and after.
    let page = audit_page(&rig, (&token, false), "org_a", Default::default(), 1000, "")
        .await
        .unwrap();
    let updates: Vec<_> = page
        .audit_events
        .iter()
        .filter(|e| e.action == "scim_settings.updated" && e.error_reason.is_empty())
        .collect();
    assert_eq!(updates.len(), 2);
    let newest = struct_json(updates[0].after.as_ref().unwrap());
    assert_eq!(newest["defaultRole"], "ORG_ROLE_ADMIN");
    let oldest_before = struct_json(updates[1].before.as_ref().unwrap());
    assert!(oldest_before.get("groupMappings").is_none());
}

// ----- the rig's organization service -----------------------------------------------------------

/// The membership changes SCIM owes the organization service reach identity as events: through
/// the rig's organization (the same RPCs and events as the real one), a member provisioned as
/// ADMIN manages SCIM, is refused once `set_role` makes them a DEVELOPER, and sees nothing once
/// deprovisioned; a retried request id changes nothing twice; the OWNER cannot be removed.
#[tokio::test]
async fn id_14_scim_membership_changes_reach_identity_as_events_once_per_request_id() {
    use orgplane_proto::organization::v1::organization_service_client::OrganizationServiceClient;
    use orgplane_proto::organization::v1::{DeprovisionMemberRequest, ProvisionMemberRequest};
    let (rig, fake) = super::sso::sso_rig().await;
    let (owner, owner_token, _) = rig.user("owner@scim-events.test").await;
    let (sam, sam_token, _) = rig.user("sam@scim-events.test").await;
    rig.create_org("org_a", &owner.id).await;
    fake.member("org_a", &owner.id, OrgRole::Owner).await;
    let service = rig.service_token().await;
    let mut orgs = OrganizationServiceClient::new(rig.server.channel());
    let provision = |role: OrgRole, request_id: &str| {
        bearer(
            ProvisionMemberRequest {
                organization_id: "org_a".into(),
                user_id: sam.id.clone(),
                role: role as i32,
                request_id: request_id.into(),
                source: "scim".into(),
                set_role: true,
            },
            &service,
        )
    };
    let deprovision = |user: &str, request_id: &str| {
        bearer(
            DeprovisionMemberRequest {
                organization_id: "org_a".into(),
                user_id: user.into(),
                request_id: request_id.into(),
                source: "scim".into(),
            },
            &service,
        )
    };
    let events = rig.identity.organization_events();
    let applied =
        |rev: i64| async move { events.wait_for(rev, Duration::from_secs(10)).await.unwrap() };
    let added = orgs
        .provision_member(provision(OrgRole::Admin, "scim:u1:1"))
        .await
        .unwrap()
        .into_inner();
    assert!(added.created);
    applied(added.revision).await;
    list_scim_tokens(&rig, &sam_token, "org_a", 0, "")
        .await
        .expect("an ADMIN manages SCIM");
    let demoted = orgs
        .provision_member(provision(OrgRole::Developer, "scim:u1:2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (demoted.created, demoted.role),
        (false, OrgRole::Developer as i32)
    );
    applied(demoted.revision).await;
    let err = list_scim_tokens(&rig, &sam_token, "org_a", 0, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "INSUFFICIENT_ROLE");
    let removed = orgs
        .deprovision_member(deprovision(&sam.id, "scim:u1:3"))
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    applied(removed.revision).await;
    let err = list_scim_tokens(&rig, &sam_token, "org_a", 0, "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(fake.role("org_a", &sam.id).await, None);
    // A retry answers the first result and removes nothing twice.
    let retry = orgs
        .deprovision_member(deprovision(&sam.id, "scim:u1:3"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, removed);
    let err = orgs
        .deprovision_member(deprovision(&owner.id, "scim:u0:1"))
        .await
        .unwrap_err();
    assert_status(
        &err,
        Code::FailedPrecondition,
        "OWNERSHIP_TRANSFER_REQUIRED",
    );
    assert_eq!(fake.deprovisions().await.len(), 3);
    list_scim_tokens(&rig, &owner_token, "org_a", 0, "")
        .await
        .expect("the OWNER stays");
}
