//! Tenancy and protocol rules: cross-tenant 404s, disabled tokens, groups to roles,
//! ETags, uniqueness and the verified-domain rule.

use orgplane_platform::testkit::bearer;
use orgplane_proto::identity::v1 as identity;
use orgplane_proto::organization::v1 as org;
use serde_json::{Value, json};

use crate::rig::{Rig, Tenant};

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true
    })
}

async fn create_user(rig: &Rig, t: &Tenant, name: &str) -> String {
    let a = rig
        .scim(Some(&t.token), "POST", "/Users", Some(&user(name)), &[])
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_cross_tenant_ids_are_404_lists_stay_in_the_tenant_and_disabled_tokens_401() {
    let rig = Rig::start(false).await.unwrap();
    let a = rig.tenant("Acme", "acme.test").await;
    let b = rig.tenant("Globex", "globex.test").await;
    let b_user = create_user(&rig, &b, "bob@globex.test").await;
    let b_group = rig
        .scim(
            Some(&b.token),
            "POST",
            "/Groups",
            Some(&json!({"displayName": "Globex Admins", "members": [{"value": b_user}]})),
            &[],
        )
        .await;
    assert_eq!(b_group.status, 201, "{:?}", b_group.body);
    let b_group = b_group.body["id"].as_str().unwrap().to_owned();
    create_user(&rig, &a, "alice@acme.test").await;
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "externalId", "value": "x"}]});
    for path in [format!("/Users/{b_user}"), format!("/Groups/{b_group}")] {
        for (method, body) in [
            ("GET", None),
            ("PUT", Some(user("bob@globex.test"))),
            ("PATCH", Some(patch.clone())),
            ("DELETE", None),
        ] {
            let body = if path.starts_with("/Groups") && method == "PUT" {
                Some(json!({"displayName": "Mine now"}))
            } else {
                body
            };
            let answer = rig
                .scim(Some(&a.token), method, &path, body.as_ref(), &[])
                .await;
            assert_eq!(answer.status, 404, "{method} {path}: {:?}", answer.body);
            assert!(!answer.body.to_string().contains("globex"), "{:?}", answer.body);
        }
    }
    // B's user is untouched.
    let still = rig
        .scim(Some(&b.token), "GET", &format!("/Users/{b_user}"), None, &[])
        .await;
    assert_eq!(still.status, 200);
    assert_eq!(still.body["active"], json!(true));
    // Lists and filters with A's token never show B's users.
    for path in [
        "/Users".to_owned(),
        "/Users?filter=userName%20eq%20%22bob%40globex.test%22".to_owned(),
        "/Groups".to_owned(),
    ] {
        let list = rig.scim(Some(&a.token), "GET", &path, None, &[]).await;
        assert_eq!(list.status, 200, "{path}: {:?}", list.body);
        assert!(!list.body.to_string().contains("globex"), "{path}: {:?}", list.body);
    }
    // Without a token, or with a bad one: 401 with WWW-Authenticate.
    for token in [None, Some("opscim_not-a-real-token")] {
        let answer = rig.scim(token, "GET", "/Users", None, &[]).await;
        assert_eq!(answer.status, 401);
        assert!(answer.headers.get("www-authenticate").is_some());
    }
    // A disabled token is refused on the very next request.
    let tokens = rig
        .identity()
        .list_scim_tokens(bearer(
            identity::ListScimTokensRequest {
                organization_id: a.org_id.clone(),
                ..Default::default()
            },
            &a.owner_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut token = tokens
        .scim_tokens
        .into_iter()
        .find(|t| t.id == a.token_id)
        .unwrap();
    token.state = identity::ScimTokenState::Disabled as i32;
    let etag = token.etag.clone();
    rig.identity()
        .update_scim_token(bearer(
            identity::UpdateScimTokenRequest {
                scim_token: Some(token),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["state".into()],
                }),
                etag,
            },
            &a.owner_token,
        ))
        .await
        .unwrap();
    let refused = rig.scim(Some(&a.token), "GET", "/Users", None, &[]).await;
    assert_eq!(refused.status, 401);
    rig.stop().await;
}

async fn role(rig: &Rig, t: &Tenant, user_id: &str) -> i32 {
    rig.orgs()
        .get_member(bearer(
            org::GetMemberRequest {
                organization_id: t.org_id.clone(),
                user_id: user_id.into(),
            },
            &t.owner_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap()
        .role
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_14_groups_map_to_roles_first_mapping_wins_and_etags_uniqueness_and_domains_hold() {
    let rig = Rig::start(false).await.unwrap();
    let t = rig.tenant("Initech", "initech.test").await;
    let settings = rig
        .identity()
        .get_scim_settings(bearer(
            identity::GetScimSettingsRequest {
                organization_id: t.org_id.clone(),
            },
            &t.owner_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .scim_settings
        .unwrap();
    rig.identity()
        .update_scim_settings(bearer(
            identity::UpdateScimSettingsRequest {
                scim_settings: Some(identity::ScimSettings {
                    organization_id: t.org_id.clone(),
                    group_mappings: vec![
                        identity::ScimGroupMapping {
                            group_display_name: "Admins".into(),
                            organization_role: org::OrgRole::Admin as i32,
                        },
                        identity::ScimGroupMapping {
                            group_display_name: "Developers".into(),
                            organization_role: org::OrgRole::Developer as i32,
                        },
                    ],
                    default_role: org::OrgRole::User as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["group_mappings".into(), "default_role".into()],
                }),
                etag: settings.etag,
            },
            &t.owner_token,
        ))
        .await
        .unwrap();
    let (_, _, pat_account) = rig.person("pat@initech.test").await;
    let pat = create_user(&rig, &t, "pat@initech.test").await;
    assert_eq!(role(&rig, &t, &pat_account).await, org::OrgRole::User as i32);
    let devs = rig
        .scim(
            Some(&t.token),
            "POST",
            "/Groups",
            Some(&json!({"displayName": "developers", "members": [{"value": pat}]})),
            &[],
        )
        .await;
    assert_eq!(devs.status, 201, "{:?}", devs.body);
    assert_eq!(role(&rig, &t, &pat_account).await, org::OrgRole::Developer as i32);
    let admins = rig
        .scim(
            Some(&t.token),
            "POST",
            "/Groups",
            Some(&json!({"displayName": "Admins"})),
            &[],
        )
        .await;
    let admins_id = admins.body["id"].as_str().unwrap().to_owned();
    let added = rig
        .scim(
            Some(&t.token),
            "PATCH",
            &format!("/Groups/{admins_id}"),
            Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": pat}]}]})),
            &[],
        )
        .await;
    assert_eq!(added.status, 200, "{:?}", added.body);
    // In both groups: the first mapping (Admins) wins.
    assert_eq!(role(&rig, &t, &pat_account).await, org::OrgRole::Admin as i32);
    let removed = rig
        .scim(
            Some(&t.token),
            "PATCH",
            &format!("/Groups/{admins_id}"),
            Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": format!("members[value eq \"{pat}\"]")}]})),
            &[],
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(role(&rig, &t, &pat_account).await, org::OrgRole::Developer as i32);

    // ETags: a stale If-Match is 412.
    let current = rig
        .scim(Some(&t.token), "GET", &format!("/Users/{pat}"), None, &[])
        .await;
    let etag = current.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(current.body["meta"]["version"], json!(etag));
    let stale = rig
        .scim(
            Some(&t.token),
            "PUT",
            &format!("/Users/{pat}"),
            Some(&user("pat@initech.test")),
            &[("if-match", "W/\"999\"")],
        )
        .await;
    assert_eq!(stale.status, 412);
    let fresh = rig
        .scim(
            Some(&t.token),
            "PUT",
            &format!("/Users/{pat}"),
            Some(&user("PAT@initech.test")),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(fresh.status, 200, "{:?}", fresh.body);
    // Uniqueness, in canonical form.
    let twice = rig
        .scim(Some(&t.token), "POST", "/Users", Some(&user("Pat@Initech.test")), &[])
        .await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.body["scimType"], json!("uniqueness"));
    // An address of a domain the organization does not hold VERIFIED: 400, unless the token
    // relaxes the rule.
    let outside = rig
        .scim(Some(&t.token), "POST", "/Users", Some(&user("sam@elsewhere.test")), &[])
        .await;
    assert_eq!(outside.status, 400);
    assert_eq!(outside.body["scimType"], json!("invalidValue"));
    let (relaxed, _) = rig.scim_token(&t.org_id, &t.owner_token, true).await;
    let accepted = rig
        .scim(Some(&relaxed), "POST", "/Users", Some(&user("sam@elsewhere.test")), &[])
        .await;
    assert_eq!(accepted.status, 201, "{:?}", accepted.body);
    rig.stop().await;
}
