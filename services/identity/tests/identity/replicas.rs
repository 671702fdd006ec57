//! A second identity instance on a rig's database: what another replica, or the same service
//! after a restart, is — its own process memory, the same database, keys and sealing key.

use super::*;

/// A running second instance.
pub(super) struct Replica {
    /// Its server (its own address).
    pub server: RunningServer,
    /// Stops it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The service, for the knobs of control arms.
    pub identity: Arc<Identity>,
}

impl Replica {
    pub fn client(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.server.channel())
    }
}

impl Rig {
    /// A second instance on this rig's database and clock, configured as the rig's test
    /// configuration with `tweak` (give it the rig's own tweak to make it a twin).
    pub(super) async fn replica(&self, tweak: impl FnOnce(&mut Config)) -> Replica {
        let url = self.server.url();
        let addr = std::net::SocketAddr::from((
            [127, 0, 0, 1],
            orgplane_platform::testkit::reserved_ports(1)[0],
        ));
        let mut server = GrpcServer::new(ServerConfig::default());
        let own = ServiceAccount {
            client_id: "orgplane-test".into(),
            client_secret: "test-secret".into(),
            capabilities: orgplane_platform::auth::Capabilities::all(),
        };
        let runtime = Runtime {
            issuer: TEST_ISSUER.into(),
            service_tokens: Arc::new(IdentityServiceTokens::new(
                channel(&url),
                own.client_id.clone(),
                own.client_secret.clone(),
            )),
            service_account: own,
            page_tokens: PageTokens::ephemeral(),
            // The same time as the rig's clock.
            clock: self.clock.clone(),
            endpoints: Endpoints {
                identity: channel(&url).into(),
                organization: channel(&url).into(),
                workspace: channel(&url).into(),
            },
            shutdown: server.shutdown_token(),
            revocations: SessionRevocations::new(),
        };
        let mut config = test_config(self.dir.path());
        tweak(&mut config);
        let mut host = Host::new(runtime.clone());
        let identity = host.open::<Identity>(&self.db_url, &config).await.unwrap();
        ServiceModule::register(&*identity, &mut server).await;
        let verifier = TokenVerifier::new(TEST_ISSUER, Arc::new(RemoteKeys::new(channel(&url))))
            .with_min_refetch(Duration::from_millis(0));
        let auth = Authenticator::new(Arc::new(verifier), None)
            .with_revocations(runtime.revocations.clone());
        let health = server.health();
        let shutdown = server.shutdown_token();
        let server = RunningServer::start(server, auth, Some(addr)).await;
        host.start(&health);
        Replica {
            server,
            shutdown,
            identity,
        }
    }
}
