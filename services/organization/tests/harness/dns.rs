//! Verified domains for the tests that need one (imports, merges): registered through the API,
//! proven by publishing the challenge in the in-process test DNS server, verified.

use orgplane_oracles::dns::TestDns;
use orgplane_proto::organization::v1::{
    CreateDomainRequest, Domain, DomainPolicy, DomainState, VerifyDomainRequest,
};

use super::Rig;

/// Registers `name` for `org` (as `owner`), publishes its challenge in `dns` and verifies it.
pub async fn verified_domain(
    rig: &Rig,
    dns: &TestDns,
    owner: &str,
    org: &str,
    name: &str,
) -> Domain {
    let mut c = rig.client();
    let d = c
        .create_domain(rig.as_user(
            owner,
            CreateDomainRequest {
                organization_id: org.into(),
                domain: Some(Domain {
                    domain_name: name.into(),
                    policy: DomainPolicy::None as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    let ch = d.challenge.clone().unwrap();
    dns.set_txt(&ch.record_name, &[ch.record_value.as_str()])
        .await;
    let d = c
        .verify_domain(rig.as_user(owner, VerifyDomainRequest { domain_id: d.id }))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    assert_eq!(d.state(), DomainState::Verified, "{d:?}");
    d
}
