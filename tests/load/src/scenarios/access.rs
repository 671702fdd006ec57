//! Scenarios 1 and 2: CheckAccess against the echo, and the auth layer's cost.

use super::*;

/// Scenario 1: CheckAccess with valid user JWTs, at `plan.concurrency`.
pub async fn check_access(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    let n = plan.tokens.min(world.users.len()).max(1);
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let user = world.users[i].clone();
        let ws = world.workspaces[i % world.workspaces.len()].clone();
        let token: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", world.rig.user_token(&user)?).parse()?;
        calls.push((check_request(&world.org, &ws, &user), token));
    }
    // Sanity: the answer is "allowed".
    let mut probe =
        ws_api::workspace_service_client::WorkspaceServiceClient::new(world.rig.channel(0));
    let mut req = tonic::Request::new(calls[0].0.clone());
    req.metadata_mut()
        .insert("authorization", calls[0].1.clone());
    let answer = probe.check_access(req).await?.into_inner();
    if !answer.allowed {
        return Err(anyhow!(
            "check_access: seeded user is not allowed: {answer:?}"
        ));
    }
    let stop = CancellationToken::new();
    let echo_channels = echo_baseline(plan, stop.clone()).await?;
    // Built like the CheckAccess call below (no boxing), so that both sides pay the same.
    let echo = move |task: usize, _| {
        let mut c = tonic_health::pb::health_client::HealthClient::new(
            echo_channels[task % echo_channels.len()].clone(),
        );
        async move {
            c.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
        }
    };
    let calls = Arc::new(calls);
    let channels = Arc::new(world.rig.channels.clone());
    let check = move |task: usize, k: u64| {
        let (msg, token) = calls[(task * 7919 + k as usize) % calls.len()].clone();
        let mut c = ws_api::workspace_service_client::WorkspaceServiceClient::new(
            channels[task % channels.len()].clone(),
        );
        async move {
            let mut req = tonic::Request::new(msg);
            req.metadata_mut().insert("authorization", token);
            matches!(c.check_access(req).await, Ok(r) if r.get_ref().allowed)
        }
    };
    let p = load::paired(
        plan.pairs,
        plan.concurrency,
        plan.warmup,
        plan.duration / plan.pairs.max(1) as u32,
        echo,
        check,
    )
    .await;
    stop.cancel();
    let (s, base) = (&p.scenario, &p.baseline);
    let p99_ok = s.quantile_us(0.99) <= 2 * base.quantile_us(0.99).max(1);
    let mut row = paired_row(
        "check_access",
        &p,
        "ratio >= 0.85 and p99 <= 2x echo p99",
        p.median() >= 0.85 && p99_ok && s.errors == 0,
    );
    row.note = format!(
        "{}; {} users in {} workspaces, {} distinct tokens, {} in flight",
        row.note,
        world.users.len(),
        world.workspaces.len(),
        n,
        plan.concurrency
    );
    Ok(row)
}

/// A layer that makes every request come from one service principal, without looking at any
/// credential: the "no auth layer" side of auth_overhead.
#[derive(Clone)]
struct FixedPrincipal;

impl<S> tower::Layer<S> for FixedPrincipal {
    type Service = FixedPrincipalService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FixedPrincipalService(inner)
    }
}

#[derive(Clone)]
struct FixedPrincipalService<S>(S);

impl<S, B> tower::Service<http::Request<B>> for FixedPrincipalService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        req.extensions_mut()
            .insert(Principal::Service(ServicePrincipal {
                name: "orgplane".into(),
                capabilities: orgplane_platform::auth::Capabilities::all(),
            }));
        self.0.call(req)
    }
}

async fn serve_workspace(
    world: &World,
    with_auth: bool,
    stop: CancellationToken,
) -> anyhow::Result<String> {
    use orgplane_platform::context::RpcLayer;
    use ws_api::workspace_service_server::WorkspaceServiceServer;
    let opened = world.rig.opened()?;
    let ws = opened
        .workspace
        .as_ref()
        .ok_or_else(|| anyhow!("no workspace service"))?;
    let service = WorkspaceServiceServer::new(ws.api());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    let config = orgplane_platform::server::ServerConfig::default();
    let builder = Server::builder()
        .timeout(config.default_timeout)
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .max_concurrent_streams(config.max_concurrent_streams);
    if with_auth {
        let identity = world.rig.channel(0);
        let verifier = TokenVerifier::new(
            "https://identity.orgplane.local",
            Arc::new(orgplane_platform::clients::RemoteKeys::new(identity)),
        );
        let auth = Authenticator::new(Arc::new(verifier), None);
        let mut b = builder.layer(RpcLayer).layer(AuthLayer::new(auth));
        let router = b.add_service(service);
        tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()));
    } else {
        let mut b = builder.layer(RpcLayer).layer(FixedPrincipal);
        let router = b.add_service(service);
        tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()));
    }
    Ok(format!("http://{addr}"))
}

/// Scenario 2: the same CheckAccess read through the auth layer (user JWTs) and through a layer
/// that sets a principal without checking anything.
pub async fn auth_overhead(world: &World, plan: &Plan) -> anyhow::Result<Row> {
    let stop = CancellationToken::new();
    let with = serve_workspace(world, true, stop.clone()).await?;
    let without = serve_workspace(world, false, stop.clone()).await?;
    let n = plan.tokens.min(world.users.len()).max(1);
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let user = world.users[i].clone();
        let ws = world.workspaces[i % world.workspaces.len()].clone();
        let token: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", world.rig.user_token(&user)?).parse()?;
        calls.push((check_request(&world.org, &ws, &user), token));
    }
    let calls = Arc::new(calls);
    let mut sides = Vec::new();
    for (url, send_token) in [(without, false), (with, true)] {
        let channels = Arc::new(connect(&url, plan.connections).await?);
        let calls = calls.clone();
        sides.push(move |task: usize, k: u64| {
            let (msg, token) = calls[(task * 7919 + k as usize) % calls.len()].clone();
            let mut c = ws_api::workspace_service_client::WorkspaceServiceClient::new(
                channels[task % channels.len()].clone(),
            );
            async move {
                let mut req = tonic::Request::new(msg);
                if send_token {
                    req.metadata_mut().insert("authorization", token);
                }
                matches!(c.check_access(req).await, Ok(r) if r.get_ref().allowed)
            }
        });
    }
    let with_auth = sides.pop().ok_or_else(|| anyhow!("two sides"))?;
    let without_auth = sides.pop().ok_or_else(|| anyhow!("two sides"))?;
    let p = load::paired(
        plan.pairs,
        plan.concurrency,
        plan.warmup,
        plan.duration / plan.pairs.max(1) as u32,
        without_auth,
        with_auth,
    )
    .await;
    stop.cancel();
    let (s, base) = (&p.scenario, &p.baseline);
    let mut row = paired_row(
        "auth_overhead",
        &p,
        "ratio >= 0.85",
        p.median() >= 0.85 && s.errors == 0,
    );
    row.note = format!(
        "baseline = same CheckAccess without the auth layer (p50 {}us p99 {}us); {} errors",
        base.quantile_us(0.5),
        base.quantile_us(0.99),
        s.errors
    );
    Ok(row)
}
