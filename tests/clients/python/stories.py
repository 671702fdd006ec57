"""Stories 1 to 3 of Orgplane, driven by the Python client package (proto/clients/python).

Run by tests/clients/python.sh, which pip-installs the package (its build generates the
`orgplane.*` modules from proto/ with grpcio-tools) and starts orgplane. Environment:
ORGPLANE_ADDR (host:port) and ORGPLANE_MAIL_DIR (where the .eml files land).

1. A business owner signs up, verifies by the mailed link, creates an organization (an
   unverified and a personal account are refused), edits it and sees the audit trail.
2. They invite a developer, a billing person and an admin, who accept; the roles show up in the
   workspace and billing services (a workspace is created and everyone checks their access);
   asking about someone else's access is refused.
3. A security-minded owner enrolls an authenticator app (codes computed by pyotp, an
   independent RFC 6238 implementation), requires a second factor in their organization, is
   refused there with a password-only token (MFA_REQUIRED), and signs in again through the MFA
   challenge; a code used once is refused the second time.
Refused calls are checked through their structured details with the package's helpers: the
google.rpc.Status in the `grpc-status-details-bin` trailer, its ErrorInfo reason read as an
`orgplane.errors.v1.ErrorReason` value (`error_reason`), and BadRequest fields
(`bad_request_fields`). The helpers' fallbacks (no status, another domain, a reason newer than
the client) are checked first, offline.
"""

import os
import pathlib
import sys
import time
import uuid

import grpc
import pyotp
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2

import orgplane_client
from orgplane_client import ErrorReason, bad_request_fields, bearer, error_info, error_reason, testing
from orgplane.errors.v1 import errors_pb2 as reasons
from orgplane.identity.v1 import identity_pb2 as idp
from orgplane.organization.v1 import organization_pb2 as orgp
from orgplane.organization.v1 import role_pb2
from orgplane.organization.v1 import security_pb2 as secp
from orgplane.workspace.v1 import workspace_pb2 as wsp
from orgplane.billing.v1 import billing_pb2 as bp

ADDR = os.environ["ORGPLANE_ADDR"]
MAIL_DIR = pathlib.Path(os.environ["ORGPLANE_MAIL_DIR"])
PASSWORD = "correct horse battery staple"
RUN = uuid.uuid4().hex[:8]  # unique addresses, so that the script also runs against a used server


def email(name):
    return f"{name}.{RUN}@example.com"


def refused(call, code, reason):
    """Runs `call`, which must fail with `code` and the ErrorReason value `reason` (for example
    `reasons.EMAIL_NOT_VERIFIED`); returns the google.rpc.Status."""
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() == code, f"{err.code()} != {code}: {err.details()}"
        status = orgplane_client.status(err)
        assert status is not None, f"no google.rpc.Status details: {err}"
        assert status.code == err.code().value[0], status
        got = error_reason(err)
        assert got == reason, f"{ErrorReason.Name(got)} != {ErrorReason.Name(reason)} in {status}"
        info = error_info(err)
        assert info.domain == "orgplane.dev" and info.reason == ErrorReason.Name(reason), info
        print(f"  refused as expected: {code.name} {ErrorReason.Name(got)}")
        return status
    raise AssertionError(f"expected {code.name} {ErrorReason.Name(reason)}")


class FakeError(grpc.RpcError):
    """A refused call as the helpers see it: a code and trailing metadata."""

    def __init__(self, *infos, raw=None):
        status = status_pb2.Status(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="no")
        for info in infos:
            status.details.add().Pack(info)
        self.trailers = [] if raw == "none" else [
            ("grpc-status-details-bin", raw if raw is not None else status.SerializeToString())
        ]

    def code(self):
        return grpc.StatusCode.FAILED_PRECONDITION

    def trailing_metadata(self):
        return self.trailers


def helpers_offline():
    print("helpers: reasons as the enum, and their fallbacks")
    info = error_details_pb2.ErrorInfo
    assert error_reason(FakeError(info(reason="EMAIL_NOT_VERIFIED", domain="orgplane.dev"))) \
        == reasons.EMAIL_NOT_VERIFIED
    # Another domain's ErrorInfo first: the orgplane.dev one still wins.
    assert error_reason(FakeError(info(reason="EMAIL_NOT_VERIFIED", domain="example.com"),
                                  info(reason="MFA_REQUIRED", domain="orgplane.dev"))) \
        == reasons.MFA_REQUIRED
    unspecified = [
        FakeError(info(reason="A_REASON_ADDED_LATER", domain="orgplane.dev")),  # newer server
        FakeError(info(reason="EMAIL_NOT_VERIFIED", domain="example.com")),  # not ours
        FakeError(),  # a status without ErrorInfo
        FakeError(raw="none"),  # no status at all (a transport failure)
        FakeError(raw=b"\xff\xff not a status"),  # garbage
    ]
    for err in unspecified:
        assert error_reason(err) == reasons.ERROR_REASON_UNSPECIFIED, err.trailers
    assert error_info(unspecified[0]).reason == "A_REASON_ADDED_LATER"
    assert bad_request_fields(unspecified[3]) == []
    assert bearer("t", min_organization_revision=7) == [
        ("authorization", "Bearer t"), ("x-min-organization-revision", "7")]
    print("  ok")


def wait_serving(channel):
    # grpc.health.v1 without generated code: HealthCheckRequest{service} / status 1 = SERVING.
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    services = [
        "orgplane.identity.v1.IdentityService",
        "orgplane.organization.v1.OrganizationService",
        "orgplane.workspace.v1.WorkspaceService",
        "orgplane.billing.v1.BillingAccessService",
    ]
    deadline = time.time() + 60
    for name in services:
        request = b"\x0a" + bytes([len(name)]) + name.encode()
        while True:
            try:
                if check(request, timeout=2) == b"\x08\x01":
                    break
            except grpc.RpcError:
                pass
            assert time.time() < deadline, f"{name} never became SERVING"
            time.sleep(0.1)


def mailed(to, pattern):
    """The first group of `pattern` in the newest mail to `to`."""
    return testing.mailed(MAIL_DIR, to, pattern, timeout=10)


class Client(orgplane_client.Client):
    """The package's stubs, plus the steps every story repeats."""

    def sign_up(self, address, name, kind):
        user = self.identity.SignUp(
            idp.SignUpRequest(email=address, password=PASSWORD, display_name=name, account_type=kind)
        ).user
        assert not user.email_verified
        return user.id

    def verify(self, address):
        token = mailed(address, r"verify-email\?token=(\S+)")
        user = self.identity.VerifyEmail(idp.VerifyEmailRequest(token=token)).user
        assert user.email_verified

    def login(self, address):
        resp = self.identity.Login(idp.LoginRequest(email=address, password=PASSWORD))
        return resp.user.id, resp.tokens.access_token


def story_1(c):
    print("story 1: a business owner signs up, verifies, creates and edits an organization")
    owner = email("owner")
    # A malformed sign-up: INVALID_ARGUMENT with BadRequest field violations.
    try:
        c.identity.SignUp(idp.SignUpRequest(email=owner, password="short", display_name="O",
                                            account_type=idp.ACCOUNT_TYPE_BUSINESS))
        raise AssertionError("a short password is refused")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        fields = bad_request_fields(err)
        assert "password" in fields, orgplane_client.status(err)
        assert error_reason(err) == reasons.INVALID_ARGUMENT, error_info(err)
        print(f"  refused as expected: INVALID_ARGUMENT, BadRequest fields {fields}")

    c.sign_up(owner, "Olivia Owner", idp.ACCOUNT_TYPE_BUSINESS)
    owner_id, token = c.login(owner)
    create = orgp.CreateOrganizationRequest(
        organization=orgp.Organization(name=f"Acme {RUN}", type=orgp.ORGANIZATION_TYPE_COMPANY)
    )
    refused(lambda: c.organizations.CreateOrganization(create, metadata=bearer(token)),
            grpc.StatusCode.FAILED_PRECONDITION, reasons.EMAIL_NOT_VERIFIED)

    personal = email("pat")
    c.sign_up(personal, "Pat Personal", idp.ACCOUNT_TYPE_PERSONAL)
    c.verify(personal)
    _, personal_token = c.login(personal)
    refused(lambda: c.organizations.CreateOrganization(create, metadata=bearer(personal_token)),
            grpc.StatusCode.FAILED_PRECONDITION, reasons.BUSINESS_ACCOUNT_REQUIRED)

    c.verify(owner)
    created = c.organizations.CreateOrganization(create, metadata=bearer(token))
    org = created.organization
    assert org.state == orgp.ORGANIZATION_STATE_ACTIVE and org.owner_user_id == owner_id
    print(f"  created {org.id} at revision {created.revision}")

    updated = c.organizations.UpdateOrganization(
        orgp.UpdateOrganizationRequest(
            organization=orgp.Organization(id=org.id, name=f"Acme Robotics {RUN}"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            etag=org.etag,
        ),
        metadata=bearer(token),
    ).organization
    assert updated.name == f"Acme Robotics {RUN}"
    refused(
        lambda: c.organizations.UpdateOrganization(
            orgp.UpdateOrganizationRequest(
                organization=orgp.Organization(id=org.id, name="Stale"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
                etag=org.etag,
            ),
            metadata=bearer(token),
        ),
        grpc.StatusCode.ABORTED, reasons.ETAG_MISMATCH,
    )
    audit = c.organizations.ListAuditEvents(
        orgp.ListAuditEventsRequest(organization_id=org.id, page_size=100), metadata=bearer(token)
    ).audit_events
    actions = [e.action for e in audit]
    assert actions.index("organization.update") < actions.index("organization.create"), actions
    assert audit[actions.index("organization.update")].actor_id == owner_id
    print(f"  audit trail: {actions}")
    return {"org": updated, "owner_id": owner_id, "token": token, "revision": created.revision}


def story_2(c, s):
    print("story 2: invites a developer, a billing person and an admin; roles everywhere")
    org_id, owner_token = s["org"].id, s["token"]
    people = [
        ("dana", role_pb2.ORG_ROLE_DEVELOPER, wsp.WORKSPACE_ROLE_DEVELOPER),
        ("bill", role_pb2.ORG_ROLE_BILLING, wsp.WORKSPACE_ROLE_BILLING),
        ("ada", role_pb2.ORG_ROLE_ADMIN, wsp.WORKSPACE_ROLE_ADMIN),
    ]
    for name, role, _ in people:
        c.organizations.CreateInvite(
            orgp.CreateInviteRequest(organization_id=org_id,
                                     invite=orgp.Invite(email=email(name), role=role)),
            metadata=bearer(owner_token),
        )
    refused(
        lambda: c.organizations.CreateInvite(
            orgp.CreateInviteRequest(organization_id=org_id,
                                     invite=orgp.Invite(email=email("dana"),
                                                        role=role_pb2.ORG_ROLE_USER)),
            metadata=bearer(owner_token),
        ),
        grpc.StatusCode.ALREADY_EXISTS, reasons.INVITE_ALREADY_PENDING,
    )
    revision = s["revision"]
    members = {}
    for name, role, _ in people:
        address = email(name)
        c.sign_up(address, name.title(), idp.ACCOUNT_TYPE_BUSINESS)
        c.verify(address)
        user_id, token = c.login(address)
        invite_id = mailed(address, r"/invites/(inv_\w+)")
        accepted = c.organizations.AcceptInvite(orgp.AcceptInviteRequest(invite_id=invite_id),
                                       metadata=bearer(token))
        assert accepted.member.role == role
        revision = max(revision, accepted.revision)
        members[name] = (user_id, token)
    listed = c.organizations.ListMembers(orgp.ListMembersRequest(organization_id=org_id),
                                metadata=bearer(owner_token)).members
    assert [m.role for m in listed] == [role_pb2.ORG_ROLE_OWNER] + [r for _, r, _ in people], listed

    # Everyone checks their own access, reading the accepts' revision.
    research = c.workspaces.CreateWorkspace(
        wsp.CreateWorkspaceRequest(organization_id=org_id, workspace=wsp.Workspace(name="Research")),
        metadata=bearer(owner_token),
    ).workspace
    for name, _, ws_role in people:
        user_id, token = members[name]
        default = c.workspaces.CheckAccess(
            wsp.CheckAccessRequest(organization_id=org_id, user_id=user_id,
                                   permission=wsp.PERMISSION_READ,
                                   min_organization_revision=revision),
            metadata=bearer(token),
        )
        assert default.allowed and default.role == ws_role, (name, default)
        inherited = c.workspaces.CheckAccess(
            wsp.CheckAccessRequest(organization_id=org_id, workspace_id=research.id,
                                   user_id=user_id, permission=wsp.PERMISSION_READ,
                                   min_organization_revision=revision),
            metadata=bearer(token),
        )
        # ADMIN and BILLING inherit a role in every workspace; DEVELOPER only once added.
        assert inherited.allowed == (name != "dana"), (name, inherited)
        billing = c.billing.CheckBillingAccess(
            bp.CheckBillingAccessRequest(organization_id=org_id, user_id=user_id,
                                         min_organization_revision=revision),
            metadata=bearer(token),
        )
        assert billing.allowed == (name != "dana"), (name, billing)
        print(f"  {name}: workspace role {wsp.WorkspaceRole.Name(default.role)}, "
              f"Research {'yes' if inherited.allowed else 'no'}, billing {billing.allowed}")
    # A user may ask about their own access only.
    refused(
        lambda: c.workspaces.CheckAccess(
            wsp.CheckAccessRequest(organization_id=org_id, workspace_id=research.id,
                                   user_id=members["ada"][0], permission=wsp.PERMISSION_READ),
            metadata=bearer(members["dana"][1]),
        ),
        grpc.StatusCode.PERMISSION_DENIED, reasons.CHECK_OWN_ACCESS_ONLY,
    )
    # A developer reading billing: PERMISSION_DENIED with its reason.
    refused(
        lambda: c.billing.GetBillingAccount(bp.GetBillingAccountRequest(organization_id=org_id),
                                            metadata=bearer(members["dana"][1])),
        grpc.StatusCode.PERMISSION_DENIED, reasons.INSUFFICIENT_ROLE,
    )
    # Someone outside the organization learns nothing: NOT_FOUND.
    outsider = email("eve")
    c.sign_up(outsider, "Eve", idp.ACCOUNT_TYPE_BUSINESS)
    _, eve_token = c.login(outsider)
    refused(
        lambda: c.organizations.GetOrganization(orgp.GetOrganizationRequest(organization_id=org_id),
                                       metadata=bearer(eve_token)),
        grpc.StatusCode.NOT_FOUND, reasons.NOT_FOUND,
    )


def story_3(c):
    print("story 3: second factors and the organization's security policy")
    address = email("sam")
    c.sign_up(address, "Sam Secure", idp.ACCOUNT_TYPE_BUSINESS)
    c.verify(address)
    _, password_only = c.login(address)
    org = c.organizations.CreateOrganization(
        orgp.CreateOrganizationRequest(organization=orgp.Organization(name=f"Secure {RUN}")),
        metadata=bearer(password_only),
    ).organization

    started = c.identity.StartTotpEnrollment(
        idp.StartTotpEnrollmentRequest(display_name="Phone"), metadata=bearer(password_only)
    )
    assert started.factor.state == idp.MFA_FACTOR_STATE_PENDING
    parsed = pyotp.parse_uri(started.otpauth_uri)
    assert parsed.secret == started.secret and parsed.name == address, started.otpauth_uri
    totp = pyotp.TOTP(started.secret)
    code = totp.now()
    confirmed = c.identity.ConfirmTotpEnrollment(
        idp.ConfirmTotpEnrollmentRequest(factor_id=started.factor.id, code=code),
        metadata=bearer(password_only),
    )
    assert confirmed.factor.state == idp.MFA_FACTOR_STATE_ACTIVE
    assert len(confirmed.recovery_codes) == 10
    with_factor = confirmed.tokens.access_token

    policy = c.organizations.UpdateSecurityPolicy(
        orgp.UpdateSecurityPolicyRequest(
            security_policy=secp.SecurityPolicy(
                organization_id=org.id, mfa_requirement=secp.MFA_REQUIREMENT_REQUIRED
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["mfa_requirement"]),
        ),
        metadata=bearer(with_factor),
    )
    assert policy.security_policy.mfa_requirement == secp.MFA_REQUIREMENT_REQUIRED
    status = refused(
        lambda: c.workspaces.ListWorkspaces(
            wsp.ListWorkspacesRequest(organization_id=org.id),
            metadata=bearer(password_only, min_organization_revision=policy.revision),
        ),
        grpc.StatusCode.UNAUTHENTICATED, reasons.MFA_REQUIRED,
    )
    print(f"  {status.message}")
    c.workspaces.ListWorkspaces(
        wsp.ListWorkspacesRequest(organization_id=org.id),
        metadata=bearer(with_factor, min_organization_revision=policy.revision),
    )

    # Signing in again: a challenge, completed with the next code (the current one is used up).
    login = c.identity.Login(idp.LoginRequest(email=address, password=PASSWORD))
    assert not login.HasField("tokens") and login.HasField("mfa_challenge")
    assert idp.MFA_METHOD_TOTP in login.mfa_challenge.methods
    refused(
        lambda: c.identity.VerifyMfaChallenge(
            idp.VerifyMfaChallengeRequest(challenge_id=login.mfa_challenge.challenge_id, totp_code=code)
        ),
        grpc.StatusCode.UNAUTHENTICATED, reasons.INVALID_MFA_CODE,
    )
    while totp.now() == code:
        time.sleep(0.5)
    signed_in = c.identity.VerifyMfaChallenge(
        idp.VerifyMfaChallengeRequest(
            challenge_id=login.mfa_challenge.challenge_id, totp_code=totp.now()
        )
    )
    c.organizations.GetOrganization(
        orgp.GetOrganizationRequest(organization_id=org.id),
        metadata=bearer(signed_in.tokens.access_token),
    )
    factors = c.identity.ListMfaFactors(
        idp.ListMfaFactorsRequest(), metadata=bearer(signed_in.tokens.access_token)
    )
    assert [f.display_name for f in factors.factors] == ["Phone"]
    assert factors.remaining_recovery_codes == 10


def main():
    helpers_offline()
    channel = grpc.insecure_channel(ADDR)
    wait_serving(channel)
    c = Client(channel)
    state = story_1(c)
    story_2(c, state)
    story_3(c)
    print("python client: stories 1 to 3 passed")


if __name__ == "__main__":
    sys.exit(main())
