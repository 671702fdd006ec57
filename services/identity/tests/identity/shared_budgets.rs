//! Rule ID-3's sign-in budgets are shared by replicas: two identity instances on one database
//! enforce one budget together (PostgreSQL and SQLite), for passwords and second-factor codes,
//! and a restart keeps both the budgets and the owner's known addresses (rule ID-12's list).
//! Control arms: replicas with budgets of their own (`isolate_sign_in_budgets_for_control_arm`,
//! which is what the in-memory throttles were) give an attacker a budget per replica and forget
//! everything on restart; a forgotten address list locks the owner out.

use super::mfa::{Enrolled, enrolled, fresh_code, login_as};
use super::replicas::Replica;
use super::*;

const WRONG: &str = "wrong password!!";
const OWNER_ADDRESS: &str = "198.51.100.7";

fn limits(c: &mut Config) {
    c.login_failures_per_account = 4;
    c.login_failures_per_peer = 6;
    c.trusted_proxies = "127.0.0.1".into();
}

/// Login through `client` as a trusted proxy forwarding for `from`.
async fn login(
    mut client: IdentityServiceClient<Channel>,
    email: &str,
    password: &str,
    from: &str,
) -> Result<LoginResponse, tonic::Status> {
    let mut req = tonic::Request::new(LoginRequest {
        email: email.into(),
        password: password.into(),
    });
    req.metadata_mut()
        .insert("x-forwarded-for", from.parse().unwrap());
    client.login(req).await.map(tonic::Response::into_inner)
}

/// The outcome of each attempt: `U` for a wrong password, `R` for RATE_LIMITED (RetryInfo
/// checked), anything else spelled out.
fn outcome(r: Result<LoginResponse, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) if e.code() == Code::Unauthenticated => "U".into(),
        Err(e) if e.code() == Code::ResourceExhausted => {
            assert_status(&e, Code::ResourceExhausted, "RATE_LIMITED");
            assert!(e.get_details_retry_info().unwrap().retry_delay.is_some());
            "R".into()
        }
        Err(e) => format!("{e:?}"),
    }
}

fn runs(outcomes: &[String]) -> String {
    outcomes.join("")
}

/// Wrong guesses alternating between the rig and `replica`: eight on one account, each from
/// another address, then twelve from one address on other accounts. Returns both sequences.
async fn spread_guesses(rig: &Rig, replica: &Replica) -> (String, String) {
    rig.sign_up("ada@example.com", AccountType::Business).await;
    let client = |i: usize| {
        if i.is_multiple_of(2) {
            rig.client()
        } else {
            replica.client()
        }
    };
    let mut account = Vec::new();
    for i in 0..8 {
        let from = format!("203.0.113.{i}");
        account.push(outcome(
            login(client(i), "ada@example.com", WRONG, &from).await,
        ));
    }
    let mut peer = Vec::new();
    for i in 0..12 {
        let email = format!("ghost{i}@example.com");
        peer.push(outcome(login(client(i), &email, WRONG, "192.0.2.1").await));
    }
    (runs(&account), runs(&peer))
}

async fn one_budget_across_two_replicas(make: impl AsyncFn() -> TestDb) {
    let rig = Rig::start(make().await, limits).await;
    let replica = rig.replica(limits).await;
    assert_eq!(
        spread_guesses(&rig, &replica).await,
        ("UUUURRRR".into(), "UUUUUURRRRRR".into()),
        "failures on either replica spend the one account budget and the one address budget"
    );
    // The right password does not help on either.
    for client in [rig.client(), replica.client()] {
        let r = login(client, "ada@example.com", PASSWORD, "203.0.113.77").await;
        assert_eq!(outcome(r), "R");
    }
    replica.shutdown.cancel();

    // Control: replicas with budgets of their own (as the in-memory throttles were) give the
    // attacker each replica's budget.
    let rig = Rig::start(make().await, limits).await;
    let replica = rig.replica(limits).await;
    rig.identity.isolate_sign_in_budgets_for_control_arm();
    replica.identity.isolate_sign_in_budgets_for_control_arm();
    assert_eq!(
        spread_guesses(&rig, &replica).await,
        ("UUUUUUUU".into(), "UUUUUUUUUUUU".into()),
        "control: twice the budget tried"
    );
    replica.shutdown.cancel();
}

#[tokio::test]
async fn id_3_two_replicas_on_postgres_enforce_one_sign_in_budget_together() {
    if TestDb::postgres().await.is_none() {
        eprintln!("skipped: ORGPLANE_TEST_POSTGRES_URL is not set");
        return;
    }
    one_budget_across_two_replicas(async || TestDb::postgres().await.unwrap()).await;
}

#[tokio::test]
async fn id_3_two_replicas_on_sqlite_enforce_one_sign_in_budget_together() {
    one_budget_across_two_replicas(async || TestDb::sqlite()).await;
}

/// Wrong second-factor codes count like passwords (rule ID-3) on whichever replica they land.
#[tokio::test]
async fn id_3_wrong_codes_on_two_replicas_spend_one_budget() {
    async fn scenario(isolate: bool) -> Result<VerifyMfaChallengeResponse, tonic::Status> {
        let rig = Rig::with(|c| c.login_failures_per_account = 3).await;
        let replica = rig.replica(|c| c.login_failures_per_account = 3).await;
        if isolate {
            rig.identity.isolate_sign_in_budgets_for_control_arm();
            replica.identity.isolate_sign_in_budgets_for_control_arm();
        }
        let ada: Enrolled = enrolled(&rig, "ada@example.com").await;
        let challenge = login_as(&rig, &ada.email, None)
            .await
            .mfa_challenge
            .unwrap()
            .challenge_id;
        let answer = |code: &str| VerifyMfaChallengeRequest {
            challenge_id: challenge.clone(),
            totp_code: code.into(),
            ..Default::default()
        };
        for i in 0..3 {
            let mut client = if i % 2 == 0 {
                rig.client()
            } else {
                replica.client()
            };
            let err = client
                .verify_mfa_challenge(answer("000000"))
                .await
                .unwrap_err();
            assert_status(&err, Code::Unauthenticated, "INVALID_MFA_CODE");
        }
        let code = fresh_code(&rig, &ada.secret);
        let r = replica.client().verify_mfa_challenge(answer(&code)).await;
        replica.shutdown.cancel();
        r.map(tonic::Response::into_inner)
    }
    let err = scenario(false).await.unwrap_err();
    assert_status(&err, Code::ResourceExhausted, "RATE_LIMITED");
    assert!(
        scenario(true).await.is_ok(),
        "control: with a budget per replica the right code still passes after three wrong ones"
    );
}

/// A restart (a new instance on the same database, with fresh memory) still refuses an
/// exhausted account, and still knows the owner's address: the owner signs in from it without
/// the `new_address` signal while strangers stay refused.
#[tokio::test]
async fn id_3_id_12_a_restart_keeps_the_budgets_and_the_owners_known_address() {
    let rig = Rig::with(limits).await;
    rig.sign_up("ada@example.com", AccountType::Business).await;
    let home = login(rig.client(), "ada@example.com", PASSWORD, OWNER_ADDRESS).await;
    assert_eq!(outcome(home), "ok");
    let mut attack = Vec::new();
    for i in 0..5 {
        let from = format!("203.0.113.{i}");
        attack.push(outcome(
            login(rig.client(), "ada@example.com", WRONG, &from).await,
        ));
    }
    assert_eq!(runs(&attack), "UUUUR");

    let restarted = rig.replica(limits).await;
    let stranger = login(
        restarted.client(),
        "ada@example.com",
        PASSWORD,
        "203.0.113.99",
    )
    .await;
    assert_eq!(
        outcome(stranger),
        "R",
        "the exhausted account is still refused"
    );
    let owner = login(
        restarted.client(),
        "ada@example.com",
        PASSWORD,
        OWNER_ADDRESS,
    )
    .await
    .unwrap();
    let risk: Vec<String> =
        serde_json::from_value(claims_of(&owner.tokens.unwrap().access_token)["risk"].clone())
            .unwrap_or_default();
    assert!(
        !risk.iter().any(|r| r == "new_address"),
        "the owner's address is still known: {risk:?}"
    );
    restarted.shutdown.cancel();

    // Control: a restart with budgets of its own (as in memory) has forgotten the attack.
    let forgetful = rig.replica(limits).await;
    forgetful.identity.isolate_sign_in_budgets_for_control_arm();
    let stranger = login(
        forgetful.client(),
        "ada@example.com",
        PASSWORD,
        "203.0.113.98",
    )
    .await;
    assert_eq!(outcome(stranger), "ok", "control: the budget was forgotten");
    forgetful.shutdown.cancel();

    // Control: with the address list forgotten, the owner is locked out with the strangers.
    rig.db()
        .execute_raw(Statement::from_string(
            rig.db().get_database_backend(),
            "DELETE FROM sign_in_addresses",
        ))
        .await
        .unwrap();
    let restarted = rig.replica(limits).await;
    let owner = login(
        restarted.client(),
        "ada@example.com",
        PASSWORD,
        OWNER_ADDRESS,
    )
    .await;
    assert_eq!(
        outcome(owner),
        "R",
        "control: a forgotten address is a stranger's"
    );
    restarted.shutdown.cancel();
}
