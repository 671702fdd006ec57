//! Rules ORG-16 and ID-12 on the policy itself: who is admitted, and which step-up signals fire.

use orgplane_proto::organization::v1::OrgRole;

use super::*;
use crate::auth::{SignIn, UserPrincipal};

const NOW: i64 = 1_800_000_000;

fn user(amr: &[&str], enrolled: bool, auth_age: i64, risk: &[&str]) -> UserPrincipal {
    UserPrincipal {
        user_id: "user_1".into(),
        session_id: "sess_1".into(),
        auth_time: NOW - auth_age,
        token_id: "t".into(),
        sign_in: SignIn {
            amr: amr.iter().map(|s| (*s).to_owned()).collect(),
            mfa_enrolled: enrolled,
            risk: risk.iter().map(|s| (*s).to_owned()).collect(),
        },
    }
}

fn policy(mfa: MfaRequirement) -> SecurityPolicy {
    SecurityPolicy {
        mfa,
        ..SecurityPolicy::default()
    }
}

fn metadata(err: &ApiError, key: &str) -> Option<String> {
    let status: tonic::Status = err.clone().into();
    let details = tonic_types::StatusExt::get_error_details(&status);
    details
        .error_info()
        .and_then(|i| i.metadata.get(key).cloned())
}

#[test]
fn org_16_required_refuses_a_password_only_sign_in_with_enrollment_hint() {
    let p = policy(MfaRequirement::Required);
    let err = p
        .admit("org_a", &user(&["pwd"], false, 0, &[]), Some(OrgRole::User))
        .unwrap_err();
    assert_eq!(err.error_reason(), MFA_REQUIRED);
    assert_eq!(metadata(&err, "organization_id").as_deref(), Some("org_a"));
    assert_eq!(
        metadata(&err, "enrollment_required").as_deref(),
        Some("true")
    );
    let err = p
        .admit("org_a", &user(&["pwd"], true, 0, &[]), Some(OrgRole::User))
        .unwrap_err();
    assert_eq!(
        metadata(&err, "enrollment_required").as_deref(),
        Some("false")
    );
    p.admit(
        "org_a",
        &user(&["pwd", "otp", "mfa"], true, 0, &[]),
        Some(OrgRole::User),
    )
    .unwrap();
}

#[test]
fn org_16_privileged_roles_only_when_so_configured() {
    let p = policy(MfaRequirement::RequiredForPrivilegedRoles);
    let pwd = user(&["pwd"], false, 0, &[]);
    for role in [OrgRole::Owner, OrgRole::Admin, OrgRole::Billing] {
        assert!(p.admit("o", &pwd, Some(role)).is_err(), "{role:?}");
    }
    for role in [OrgRole::Developer, OrgRole::User] {
        p.admit("o", &pwd, Some(role)).unwrap();
    }
    policy(MfaRequirement::Optional)
        .admit("o", &pwd, Some(OrgRole::Owner))
        .unwrap();
}

#[test]
fn org_16_sso_only_refuses_password_sign_ins() {
    let p = SecurityPolicy {
        password_allowed: false,
        ..SecurityPolicy::default()
    };
    let err = p
        .admit("o", &user(&["pwd"], false, 0, &[]), None)
        .unwrap_err();
    assert_eq!(err.error_reason(), SSO_REQUIRED);
    p.admit("o", &user(&["ext"], false, 0, &[]), None).unwrap();
}

#[test]
fn org_16_policy_round_trips_through_its_message_and_storage() {
    let p = SecurityPolicy {
        mfa: MfaRequirement::RequiredForPrivilegedRoles,
        reauth_max_age_secs: 900,
        password_allowed: true,
        sso_allowed: false,
    };
    assert_eq!(SecurityPolicy::from_proto(&p.to_proto("o")), p);
    let stored = p.to_proto("o");
    assert_eq!(
        SecurityPolicy::from_parts(stored.mfa_requirement, 900, p.methods_bits()),
        p
    );
}

fn step_up_err(u: &UserPrincipal, p: &SecurityPolicy, role: Option<OrgRole>) -> ApiError {
    let principal = Principal::User(u.clone());
    require_recent_sign_in(
        &principal,
        StepUp {
            policy: p,
            role,
            organization_id: Some("org_a"),
        },
        NOW,
    )
    .unwrap_err()
}

#[test]
fn id_12_each_signal_alone_requires_reauthentication_with_metadata() {
    let p = SecurityPolicy::default();
    let stale = step_up_err(&user(&["pwd"], false, 301, &[]), &p, Some(OrgRole::Owner));
    assert_eq!(stale.error_reason(), REAUTHENTICATION_REQUIRED);
    assert_eq!(
        metadata(&stale, "signals").as_deref(),
        Some("stale_sign_in")
    );
    assert_eq!(metadata(&stale, "required").as_deref(), Some("password"));
    assert_eq!(metadata(&stale, "max_age_seconds").as_deref(), Some("300"));

    let new_address = step_up_err(&user(&["pwd"], false, 0, &["new_address"]), &p, None);
    assert_eq!(
        metadata(&new_address, "signals").as_deref(),
        Some("new_address")
    );

    let failures = step_up_err(&user(&["pwd"], true, 0, &["recent_failures"]), &p, None);
    assert_eq!(
        metadata(&failures, "signals").as_deref(),
        Some("recent_failures")
    );
    assert_eq!(
        metadata(&failures, "required").as_deref(),
        Some("second_factor")
    );

    let missing = step_up_err(
        &user(&["pwd"], false, 0, &[]),
        &policy(MfaRequirement::RequiredForPrivilegedRoles),
        Some(OrgRole::Owner),
    );
    assert_eq!(
        metadata(&missing, "signals").as_deref(),
        Some("second_factor_missing")
    );
    assert_eq!(
        metadata(&missing, "required").as_deref(),
        Some("second_factor")
    );
}

#[test]
fn id_12_a_fresh_safe_sign_in_passes_and_the_age_follows_the_policy() {
    let principal = Principal::User(user(&["pwd", "otp", "mfa"], true, 600, &[]));
    let long = SecurityPolicy::with_reauth_max_age(900);
    let step = StepUp {
        policy: &long,
        role: Some(OrgRole::Owner),
        organization_id: None,
    };
    require_recent_sign_in(&principal, step, NOW).unwrap();
    let short = SecurityPolicy::with_reauth_max_age(300);
    let step = StepUp {
        policy: &short,
        ..step
    };
    assert!(require_recent_sign_in(&principal, step, NOW).is_err());
}

#[test]
fn id_10_own_account_changes_need_the_factor_once_enrolled() {
    let enrolled = user(&["pwd"], true, 0, &[]);
    let own = SecurityPolicy::own_account(&enrolled, 300);
    let err = step_up_err(&enrolled, &own, None);
    assert_eq!(
        metadata(&err, "signals").as_deref(),
        Some("second_factor_missing")
    );
    let fresh = user(&["pwd"], false, 0, &[]);
    let principal = Principal::User(fresh.clone());
    let own = SecurityPolicy::own_account(&fresh, 300);
    let step = StepUp {
        policy: &own,
        role: None,
        organization_id: None,
    };
    require_recent_sign_in(&principal, step, NOW).unwrap();
}
