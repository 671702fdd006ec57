//! The organization service's internal RPCs as identity's SSO, sign-up and SCIM tests need them
//! (rules ID-13, ID-14, ORG-14): LookupDomain answers what the test set (verified domains,
//! invites); ProvisionMember adds a member (or, with `set_role`, changes a non-OWNER's role) and
//! DeprovisionMember removes one, each once per request id, publishing `MemberAdded`,
//! `MemberRoleChanged` or `MemberRemoved` through the rig's organization producer. A real gRPC
//! service on the rig's server, recording every call; it can be told to answer UNAVAILABLE.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use orgplane_platform::events::Outbox;
use orgplane_proto::events::v1::event::Payload;
use orgplane_proto::events::v1::{MemberAdded, MemberRemoved, MemberRoleChanged};
use orgplane_proto::organization::v1::organization_service_server::OrganizationService;
use orgplane_proto::organization::v1::{
    DeprovisionMemberRequest, DeprovisionMemberResponse, DomainPolicy, LookupDomainRequest,
    LookupDomainResponse, OrgRole, ProvisionMemberRequest, ProvisionMemberResponse, VerifiedDomain,
};
use sea_orm::TransactionTrait;

#[derive(Default)]
struct FakeState {
    /// (organization, canonical email) pending invites.
    invites: Vec<(String, String)>,
    /// What LookupDomain answers as VERIFIED.
    verified: Vec<VerifiedDomain>,
    /// LookupDomain calls (emails).
    lookups: Vec<String>,
    /// ProvisionMember calls.
    provisions: Vec<ProvisionMemberRequest>,
    /// request id → the first answer.
    answered: HashMap<String, ProvisionMemberResponse>,
    /// DeprovisionMember calls.
    deprovisions: Vec<DeprovisionMemberRequest>,
    /// request id → the first DeprovisionMember answer.
    deprovisioned: HashMap<String, DeprovisionMemberResponse>,
    /// (organization, user) → role of the members added here (and of those `member` set).
    members: HashMap<(String, String), i32>,
    /// Answer UNAVAILABLE to everything.
    down: bool,
    /// Organizations whose ProvisionMember answers EMAIL_DOMAIN_BLOCKED.
    blocking: Vec<String>,
}

/// The organization service's LookupDomain and ProvisionMember, recording calls; provisioned
/// members are published as `MemberAdded` through the rig's organization producer.
#[derive(Clone, Default)]
pub struct FakeOrganization {
    state: Arc<tokio::sync::Mutex<FakeState>>,
    outbox: Arc<OnceLock<Outbox>>,
}

impl FakeOrganization {
    pub fn publish_through(&self, outbox: Outbox) {
        let _ = self.outbox.set(outbox);
    }

    pub async fn invite(&self, org: &str, email: &str) {
        self.state
            .lock()
            .await
            .invites
            .push((org.into(), email.into()));
    }

    pub async fn verified(&self, org: &str, domain: &str, policy: DomainPolicy) {
        self.state.lock().await.verified.push(VerifiedDomain {
            domain_id: format!("dom_{org}_{domain}"),
            organization_id: org.into(),
            domain_name: domain.into(),
            policy: policy as i32,
        });
    }

    pub async fn block(&self, org: &str) {
        self.state.lock().await.blocking.push(org.into());
    }

    pub async fn set_down(&self, down: bool) {
        self.state.lock().await.down = down;
    }

    pub async fn lookups(&self) -> Vec<String> {
        self.state.lock().await.lookups.clone()
    }

    pub async fn provisions(&self) -> Vec<ProvisionMemberRequest> {
        self.state.lock().await.provisions.clone()
    }

    pub async fn deprovisions(&self) -> Vec<DeprovisionMemberRequest> {
        self.state.lock().await.deprovisions.clone()
    }

    /// Records `user` as a member of `org` with `role` (as the rig's `add_member` publishes it).
    pub async fn member(&self, org: &str, user: &str, role: OrgRole) {
        self.state
            .lock()
            .await
            .members
            .insert((org.into(), user.into()), role as i32);
    }

    /// The role of `user` in `org` here, if a member.
    pub async fn role(&self, org: &str, user: &str) -> Option<i32> {
        self.state
            .lock()
            .await
            .members
            .get(&(org.to_owned(), user.to_owned()))
            .copied()
    }

    /// Publishes `payload` through the rig's organization producer; its revision.
    async fn publish(&self, payload: Payload) -> i64 {
        let outbox = self.outbox.get().expect("the rig's producer");
        let txn = outbox.connection().begin().await.unwrap();
        let rev = outbox.append(&txn, payload, "test").await.unwrap();
        txn.commit().await.unwrap();
        outbox.committed(rev);
        rev
    }
}

#[tonic::async_trait]
impl OrganizationService for FakeOrganization {
    async fn lookup_domain(
        &self,
        req: tonic::Request<LookupDomainRequest>,
    ) -> Result<tonic::Response<LookupDomainResponse>, tonic::Status> {
        let mut s = self.state.lock().await;
        let email = req.into_inner().email;
        s.lookups.push(email.clone());
        if s.down {
            return Err(tonic::Status::unavailable("down for the test"));
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        Ok(tonic::Response::new(LookupDomainResponse {
            canonical_email: email.clone(),
            verified_domains: s
                .verified
                .iter()
                .filter(|d| d.domain_name == domain)
                .cloned()
                .collect(),
            invited_organization_ids: s
                .invites
                .iter()
                .filter(|(_, e)| *e == email)
                .map(|(o, _)| o.clone())
                .collect(),
        }))
    }

    async fn provision_member(
        &self,
        req: tonic::Request<ProvisionMemberRequest>,
    ) -> Result<tonic::Response<ProvisionMemberResponse>, tonic::Status> {
        let r = req.into_inner();
        let mut s = self.state.lock().await;
        s.provisions.push(r.clone());
        if s.down {
            return Err(tonic::Status::unavailable("down for the test"));
        }
        if s.blocking.contains(&r.organization_id) {
            return Err(orgplane_platform::ApiError::failed_precondition(
                orgplane_platform::error::Reason::EmailDomainBlocked,
                &r.organization_id,
                "the organization blocks the address's domain",
            )
            .into());
        }
        if let Some(first) = s.answered.get(&r.request_id) {
            return Ok(tonic::Response::new(*first));
        }
        let key = (r.organization_id.clone(), r.user_id.clone());
        let answer = match s.members.get(&key).copied() {
            None => {
                s.members.insert(key, r.role);
                let revision = self
                    .publish(Payload::MemberAdded(MemberAdded {
                        organization_id: r.organization_id.clone(),
                        user_id: r.user_id.clone(),
                        role: r.role,
                    }))
                    .await;
                ProvisionMemberResponse {
                    role: r.role,
                    created: true,
                    revision,
                }
            }
            Some(old) if r.set_role && old != OrgRole::Owner as i32 && old != r.role => {
                s.members.insert(key, r.role);
                let revision = self
                    .publish(Payload::MemberRoleChanged(MemberRoleChanged {
                        organization_id: r.organization_id.clone(),
                        user_id: r.user_id.clone(),
                        old_role: old,
                        new_role: r.role,
                    }))
                    .await;
                ProvisionMemberResponse {
                    role: r.role,
                    created: false,
                    revision,
                }
            }
            Some(old) => ProvisionMemberResponse {
                role: old,
                created: false,
                revision: 0,
            },
        };
        s.answered.insert(r.request_id.clone(), answer);
        Ok(tonic::Response::new(answer))
    }

    async fn deprovision_member(
        &self,
        req: tonic::Request<DeprovisionMemberRequest>,
    ) -> Result<tonic::Response<DeprovisionMemberResponse>, tonic::Status> {
        let r = req.into_inner();
        let mut s = self.state.lock().await;
        s.deprovisions.push(r.clone());
        if s.down {
            return Err(tonic::Status::unavailable("down for the test"));
        }
        if let Some(first) = s.deprovisioned.get(&r.request_id) {
            return Ok(tonic::Response::new(*first));
        }
        let key = (r.organization_id.clone(), r.user_id.clone());
        let answer = match s.members.get(&key).copied() {
            Some(role) if role == OrgRole::Owner as i32 => {
                return Err(orgplane_platform::ApiError::failed_precondition(
                    orgplane_platform::error::Reason::OwnershipTransferRequired,
                    &r.user_id,
                    "the OWNER cannot be removed",
                )
                .into());
            }
            Some(role) => {
                s.members.remove(&key);
                let revision = self
                    .publish(Payload::MemberRemoved(MemberRemoved {
                        organization_id: r.organization_id.clone(),
                        user_id: r.user_id.clone(),
                        old_role: role,
                    }))
                    .await;
                DeprovisionMemberResponse {
                    removed: true,
                    revision,
                }
            }
            None => DeprovisionMemberResponse {
                removed: false,
                revision: 0,
            },
        };
        s.deprovisioned.insert(r.request_id.clone(), answer);
        Ok(tonic::Response::new(answer))
    }
}
