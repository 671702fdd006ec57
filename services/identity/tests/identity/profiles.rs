//! `UserProfileChanged` (rule ID-1's profile, as the organization service keeps it): a new account
//! publishes its display name and email, and UpdateUser publishes them again only when one of the
//! two changed.

use super::*;

/// The `UserProfileChanged` events of `user_id` in identity's outbox, oldest first.
async fn profiles_of(rig: &Rig, user_id: &str) -> Vec<UserProfileChanged> {
    rig.outbox_events()
        .await
        .into_iter()
        .filter_map(|p| match p {
            Payload::UserProfileChanged(e) if e.user_id == user_id => Some(e),
            _ => None,
        })
        .collect()
}

/// UpdateUser of the caller's `paths` from `user`.
async fn update(rig: &Rig, token: &str, user: User, paths: &[&str]) -> User {
    rig.client()
        .update_user(bearer(
            UpdateUserRequest {
                user: Some(User {
                    id: "me".into(),
                    ..user
                }),
                update_mask: mask(paths),
                etag: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

#[tokio::test]
async fn id_1_new_accounts_and_changed_names_or_emails_publish_user_profile_changed() {
    let rig = Rig::sqlite().await;
    let ada = rig.sign_up("Ada@Example.com", AccountType::Personal).await;
    let first = UserProfileChanged {
        user_id: ada.id.clone(),
        display_name: "Ada Lovelace".into(),
        email: "Ada@example.com".into(),
    };
    assert_eq!(
        profiles_of(&rig, &ada.id).await,
        std::slice::from_ref(&first)
    );
    let token = rig
        .login("ada@example.com")
        .await
        .tokens
        .unwrap()
        .access_token;

    // Neither the name nor the email changed: nothing to publish.
    let business = User {
        account_type: AccountType::Business as i32,
        ..Default::default()
    };
    update(&rig, &token, business, &["account_type"]).await;
    let same_name = User {
        display_name: "Ada Lovelace".into(),
        ..Default::default()
    };
    update(&rig, &token, same_name, &["display_name"]).await;
    assert_eq!(
        profiles_of(&rig, &ada.id).await,
        std::slice::from_ref(&first)
    );

    let renamed = User {
        display_name: "Ada King".into(),
        ..Default::default()
    };
    update(&rig, &token, renamed, &["display_name"]).await;
    let moved = User {
        email: "ada@lovelace.example".into(),
        ..Default::default()
    };
    let after = update(&rig, &token, moved, &["email"]).await;
    assert!(!after.email_verified);
    let second = UserProfileChanged {
        display_name: "Ada King".into(),
        ..first.clone()
    };
    let third = UserProfileChanged {
        email: "ada@lovelace.example".into(),
        ..second.clone()
    };
    assert_eq!(profiles_of(&rig, &ada.id).await, [first, second, third]);
}
