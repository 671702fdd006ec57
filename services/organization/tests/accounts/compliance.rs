//! Compliance designations (rule ACC-5): the organization's default applies to accounts created
//! afterwards only, subaccounts take their parent's, accounts are flagged one by one.

use orgplane_proto::organization::v1::*;
use tonic::Code;

use crate::common::*;
use crate::harness::Backend;

#[tokio::test]
async fn acc_5_the_default_applies_to_new_accounts_only_and_subaccounts_take_their_parents() {
    let env = env(Backend::Sqlite).await.unwrap();
    let org = create_org(&env, "user_o1", "Acme").await;
    join(&env, &org.id, "user_o1", "user_m1", OrgRole::User).await;
    let d = accounts(&env)
        .get_compliance_defaults(env.as_user(
            "user_m1",
            GetComplianceDefaultsRequest {
                organization_id: org.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .defaults
        .unwrap();
    assert_eq!(d.designation(), ComplianceDesignation::None);
    assert!(d.update_time.is_none());
    let old = create_account(&env, "user_o1", &org.id, "Old", "").await;
    let old_sub = create_sub(&env, "user_o1", &old.id, "OldSub")
        .await
        .unwrap();
    expect_err(
        set_default(&env, "user_m1", &org.id, ComplianceDesignation::Hipaa).await,
        Code::PermissionDenied,
        "INSUFFICIENT_ROLE",
    );
    let err = set_default(&env, "user_o1", &org.id, ComplianceDesignation::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let d = set_default(&env, "user_o1", &org.id, ComplianceDesignation::Hipaa)
        .await
        .unwrap()
        .into_inner()
        .defaults
        .unwrap();
    assert_eq!(d.designation(), ComplianceDesignation::Hipaa);
    assert_eq!(d.etag, "v1");
    let stale = accounts(&env)
        .update_compliance_defaults(env.as_user(
            "user_o1",
            UpdateComplianceDefaultsRequest {
                organization_id: org.id.clone(),
                designation: ComplianceDesignation::None as i32,
                etag: "v0".into(),
            },
        ))
        .await;
    expect_err(stale, Code::Aborted, "ETAG_MISMATCH");
    // Existing accounts keep theirs.
    let old_now = get(&env, "user_o1", &old.id, "").await.unwrap();
    assert_eq!(old_now.compliance(), ComplianceDesignation::None);
    assert_eq!(old_now, old);
    let new = create_account(&env, "user_o1", &org.id, "New", "").await;
    assert_eq!(new.compliance(), ComplianceDesignation::Hipaa);
    assert_eq!(
        new.compliance_source(),
        ComplianceSource::OrganizationDefault
    );
    // A subaccount takes its parent's designation at creation, whatever the default.
    let sub = create_sub(&env, "user_o1", &old.id, "Sub").await.unwrap();
    assert_eq!(sub.compliance(), ComplianceDesignation::None);
    assert_eq!(sub.compliance_source(), ComplianceSource::Parent);
    let hipaa_sub = create_sub(&env, "user_o1", &new.id, "HSub").await.unwrap();
    assert_eq!(hipaa_sub.compliance(), ComplianceDesignation::Hipaa);
    // Flagged one by one.
    let flagged = update(
        &env,
        "user_o1",
        Account {
            id: old.id.clone(),
            compliance: ComplianceDesignation::Hipaa as i32,
            ..Default::default()
        },
        &["compliance"],
    )
    .await
    .unwrap()
    .into_inner()
    .account
    .unwrap();
    assert_eq!(flagged.compliance(), ComplianceDesignation::Hipaa);
    assert_eq!(flagged.compliance_source(), ComplianceSource::Explicit);
    // Its existing subaccounts keep theirs.
    let old_sub_now = get(&env, "user_o1", &old_sub.id, "").await.unwrap();
    assert_eq!(old_sub_now.compliance(), ComplianceDesignation::None);
    assert_eq!(old_sub_now.compliance_source(), ComplianceSource::Parent);
    let log = env.audit_log("user_o1", &org.id).await;
    assert!(
        log.iter().any(|e| e.action == "compliance_defaults.update"),
        "{log:?}"
    );
}
