//! Scenario 5: Login throughput against identity's argon2id hasher alone.

use super::*;

/// Scenario 5: Login throughput vs identity's argon2id hasher alone, same parameters, same
/// number in flight.
pub async fn login(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    use orgplane_identity::crypto::{OWASP_ITERATIONS, OWASP_MEMORY_KIB, PasswordHasherPool};
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let pool = PasswordHasherPool::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, parallel)?;
    let password = "correct horse battery staple";
    let hash = pool.hash(password).await?;
    let users: Vec<String> = (0..16).map(|i| format!("login{i:02}@bench.test")).collect();
    for (i, email) in users.iter().enumerate() {
        world
            .rig
            .seed_user(&format!("user_login{i:02}"), email, &hash)
            .await?;
    }
    let raw = {
        let pool = pool.clone();
        let hash = Arc::new(hash.clone());
        load::run(
            plan.login_concurrency,
            plan.warmup,
            plan.duration,
            move |_, _| {
                let pool = pool.clone();
                let hash = hash.clone();
                async move { matches!(pool.verify(password, &hash).await, Ok(true)) }
            },
        )
        .await
    };
    let rss_before = rss_kib(None);
    let channels = Arc::new(world.rig.channels.clone());
    let users = Arc::new(users);
    let s = load::run(
        plan.login_concurrency,
        plan.warmup,
        plan.duration,
        move |task, k| {
            let mut c = id_api::identity_service_client::IdentityServiceClient::new(
                channels[task % channels.len()].clone(),
            );
            let email = users[(task + k as usize) % users.len()].clone();
            async move {
                c.login(id_api::LoginRequest {
                    email,
                    password: password.into(),
                })
                .await
                .is_ok()
            }
        },
    )
    .await;
    let rss_after = rss_kib(None);
    // A burst of 64 sign-ins at once (the spray that used to leave hundreds of MiB behind):
    // the hasher's memory is taken once, so the process does not grow with the burst.
    let burst = (0..64).map(|i| {
        let mut c = id_api::identity_service_client::IdentityServiceClient::new(
            world.rig.channels[i % world.rig.channels.len()].clone(),
        );
        let email = format!("login{:02}@bench.test", i % 16);
        async move {
            c.login(id_api::LoginRequest {
                email,
                password: password.into(),
            })
            .await
            .map_or_else(|s| format!("{:?}", s.code()), |_| "Ok".to_owned())
        }
    });
    // Sign-ins beyond identity's bound on queued hashes are refused at once, by design.
    let mut burst_codes = std::collections::BTreeMap::<String, usize>::new();
    for code in futures::future::join_all(burst).await {
        *burst_codes.entry(code).or_default() += 1;
    }
    let rss_burst = rss_kib(None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_settled = rss_kib(None);
    let growth_mib = rss_burst.max(rss_settled).saturating_sub(rss_after) / 1024;
    let ratio = s.rate() / raw.rate().max(1e-9);
    Ok(Row {
        scenario: "login".into(),
        value: s.rate(),
        unit: "logins/s".into(),
        baseline: raw.rate(),
        ratio,
        p50_us: s.quantile_us(0.5),
        p99_us: s.quantile_us(0.99),
        goal: "ratio >= 0.9 vs raw argon2id verify; a burst of 64 grows RSS by <= 16 MiB".into(),
        met: Some(ratio >= 0.9 && s.errors == 0 && growth_mib <= 16),
        note: format!(
            "argon2id m={OWASP_MEMORY_KIB}KiB t={OWASP_ITERATIONS}, {} in flight, hasher pool of {parallel}; process RSS {} -> {} MiB, burst of 64: {} MiB, 1 s later {} MiB (answers {burst_codes:?}); {} errors",
            plan.login_concurrency,
            rss_before / 1024,
            rss_after / 1024,
            rss_burst / 1024,
            rss_settled / 1024,
            s.errors
        ),
        spread: None,
    })
}
