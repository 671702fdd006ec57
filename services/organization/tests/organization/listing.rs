//! ORG-8: the name filter is a literal substring with a length limit, never a SQL pattern.

use super::*;

async fn names_containing(rig: &Rig, text: &str) -> Result<Vec<String>, tonic::Status> {
    rig.client()
        .list_organizations(rig.as_user(
            "user_ada",
            ListOrganizationsRequest {
                name_contains: text.into(),
                order_by: "name".into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| {
            r.into_inner()
                .organizations
                .into_iter()
                .map(|o| o.name)
                .collect()
        })
}

#[tokio::test]
async fn org_8_name_contains_is_a_literal_substring_of_at_most_100_characters() {
    let rig = Rig::new(Backend::Sqlite).await.unwrap();
    for name in [
        "50% Off",
        "5000 Club",
        "a_b Labs",
        "axb Labs",
        r"Back\slash",
    ] {
        create_org(&rig, "user_ada", name).await;
    }
    // `%`, `_` and `\` are characters, not wildcards or escapes.
    assert_eq!(names_containing(&rig, "50%").await.unwrap(), ["50% Off"]);
    assert_eq!(names_containing(&rig, "a_b").await.unwrap(), ["a_b Labs"]);
    assert_eq!(
        names_containing(&rig, r"k\s").await.unwrap(),
        [r"Back\slash"]
    );
    assert_eq!(names_containing(&rig, "%").await.unwrap(), ["50% Off"]);
    assert_eq!(names_containing(&rig, "LABS").await.unwrap().len(), 2);
    // What the outside attack sent (25,000 `%`, 50,000 letters) and anything longer than a name
    // can be is INVALID_ARGUMENT naming the field, not INTERNAL.
    for text in ["%".repeat(25_000), "a".repeat(50_000), "x".repeat(101)] {
        let err = names_containing(&rig, &text).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let fields = tonic_types::StatusExt::get_details_bad_request(&err).map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| v.field)
                .collect::<Vec<_>>()
        });
        assert_eq!(fields, Some(vec!["name_contains".to_owned()]));
    }
    assert_eq!(
        names_containing(&rig, &"%".repeat(100)).await.unwrap(),
        Vec::<String>::new()
    );
}
