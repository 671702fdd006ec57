"""SCIM 2.0 conformance of Orgplane's identity service (rule ID-14, issue 17), judged by two
independent tools from PyPI against a running orgplane:

- scim2-tester's `check_server()` (discovery, CRUD and PATCH of every resource type the server
  publishes): every result is printed; any ERROR or CRITICAL fails the run.
- scim-sanity's `probe --json-output` (a CRUD lifecycle, search, pagination, error handling): the
  counts are printed; a FAIL or ERROR fails the run unless it is listed in
  SCIM_SANITY_DISAGREEMENTS below with the reason we hold the tool wrong.

Set-up over gRPC with the client generated from proto/: an owner signs up and verifies by the
mailed link, creates an organization, and creates a SCIM token with
`allow_unverified_user_names` (the tools invent user names in domains nobody verified; every
other SCIM test runs with the verified-domain requirement on).

Run by tests/scim/run.sh. Environment: ORGPLANE_ADDR (gRPC host:port), ORGPLANE_HTTP_ADDR (HTTP
host:port), ORGPLANE_MAIL_DIR (where the .eml files land).
"""

import collections
import json
import os
import pathlib
import subprocess
import sys
import time
import uuid

import grpc
import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from orgplane.identity.v1 import identity_pb2 as idp, identity_pb2_grpc as idg
from orgplane.identity.v1 import scim_pb2
from orgplane.organization.v1 import organization_pb2 as orgp, organization_pb2_grpc as orgg
from orgplane_client import testing

ADDR = os.environ["ORGPLANE_ADDR"]
BASE_URL = f"http://{os.environ['ORGPLANE_HTTP_ADDR']}/scim/v2"
MAIL_DIR = pathlib.Path(os.environ["ORGPLANE_MAIL_DIR"])
PASSWORD = "correct horse battery staple"
RUN = uuid.uuid4().hex[:8]

# scim-sanity results we hold to be wrong, by result name, each with the reason. A name listed
# here is reported but does not fail the run; each is argued from the RFCs.
SCIM_SANITY_DISAGREEMENTS: dict[str, str] = {
    "PATCH /Groups/{id} add member": (
        "the probe adds the member id 'fake-member-id', which names no User; groups map to "
        "organization roles (rule ID-14), so a reference to no user of the organization is refused "
        "with 400 invalidValue (RFC 7644 §3.5.2, §3.12) rather than stored dangling"
    ),
}

# scim2-tester statuses that fail the run (MUST-level violations and security problems).
FAILING = {Status.ERROR, Status.CRITICAL}


def mailed(to, pattern):
    """The first group of `pattern` in the newest mail to `to`."""
    return testing.mailed(MAIL_DIR, to, pattern, timeout=15)


def wait_http_ready():
    deadline = time.time() + 60
    while True:
        try:
            if httpx2.get(f"http://{os.environ['ORGPLANE_HTTP_ADDR']}/readyz", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        assert time.time() < deadline, "the HTTP listener never became ready"
        time.sleep(0.2)


def retrying(call, what):
    """Calls `call` until identity has applied the organization's events (the new owner's role)."""
    deadline = time.time() + 30
    while True:
        try:
            return call()
        except grpc.RpcError as err:
            transient = err.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.PERMISSION_DENIED,
            )
            if not transient or time.time() > deadline:
                raise AssertionError(f"{what}: {err.code().name} {err.details()}") from err
            time.sleep(0.2)


def scim_token():
    """A fresh owner, organization and SCIM token; returns the token's secret."""
    channel = grpc.insecure_channel(ADDR)
    grpc.channel_ready_future(channel).result(timeout=60)
    identity = idg.IdentityServiceStub(channel)
    orgs = orgg.OrganizationServiceStub(channel)
    owner = f"scim-owner.{RUN}@example.com"
    retrying(
        lambda: identity.SignUp(
            idp.SignUpRequest(
                email=owner,
                password=PASSWORD,
                display_name="Sam Scim",
                account_type=idp.ACCOUNT_TYPE_BUSINESS,
            )
        ),
        "SignUp",
    )
    link = mailed(owner, r"verify-email\?token=(\S+)")
    identity.VerifyEmail(idp.VerifyEmailRequest(token=link))
    access = identity.Login(idp.LoginRequest(email=owner, password=PASSWORD)).tokens.access_token
    created = orgs.CreateOrganization(
        orgp.CreateOrganizationRequest(
            organization=orgp.Organization(
                name=f"SCIM conformance {RUN}", type=orgp.ORGANIZATION_TYPE_COMPANY
            )
        ),
        metadata=[("authorization", f"Bearer {access}")],
    )
    metadata = [
        ("authorization", f"Bearer {access}"),
        ("x-min-organization-revision", str(created.revision)),
    ]
    response = retrying(
        lambda: identity.CreateScimToken(
            idp.CreateScimTokenRequest(
                organization_id=created.organization.id,
                scim_token=scim_pb2.ScimToken(
                    display_name="conformance testers", allow_unverified_user_names=True
                ),
            ),
            metadata=metadata,
        ),
        "CreateScimToken",
    )
    assert response.token.startswith("opscim_"), "a SCIM token secret"
    assert response.scim_token.allow_unverified_user_names
    print(f"set-up: organization {created.organization.id}, SCIM token {response.scim_token.id}")
    return response.token


def run_scim2_tester(token):
    """scim2-tester's check_server; returns the failing results."""
    http = httpx2.Client(
        base_url=BASE_URL, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    results = check_server(SyncSCIMClient(http))
    counts = collections.Counter(r.status.name for r in results)
    for r in results:
        where = f"[{r.resource_type}] " if r.resource_type else ""
        reason = f": {r.reason}" if r.reason else ""
        print(f"  {r.status.name:<10} {where}{r.title}{reason}")
    failing = [r for r in results if r.status in FAILING]
    summary = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    print(f"scim2-tester: {len(results)} checks: {summary}")
    return failing


def run_scim_sanity(token):
    """scim-sanity's probe; returns the failures not listed as disagreements."""
    tool = pathlib.Path(sys.executable).with_name("scim-sanity")
    out = subprocess.run(
        [str(tool), "probe", BASE_URL, "--token", token, "--json-output", "--i-accept-side-effects"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError as err:
        raise AssertionError(
            f"scim-sanity printed no JSON (exit {out.returncode}): {out.stdout}\n{out.stderr}"
        ) from err
    summary = report["summary"]
    failures = []
    for r in report["results"]:
        status = r["status"].upper()
        line = f"  {status:<6} {r['name']}"
        if r.get("message"):
            line += f": {r['message']}"
        print(line)
        if status in ("FAIL", "ERROR"):
            if r.get("details"):
                print(f"         details: {r['details']}")
            if r["name"] in SCIM_SANITY_DISAGREEMENTS:
                print(f"         disagreement: {SCIM_SANITY_DISAGREEMENTS[r['name']]}")
            else:
                failures.append(r)
    print(
        "scim-sanity: {total} results: passed {passed}, failed {failed}, errors {errors}, "
        "warnings {warnings}, skipped {skipped}".format(**summary)
    )
    return failures


def main():
    wait_http_ready()
    token = scim_token()
    print(f"scim2-tester check_server against {BASE_URL}")
    tester_failures = run_scim2_tester(token)
    print(f"scim-sanity probe against {BASE_URL}")
    sanity_failures = run_scim_sanity(token)
    if tester_failures or sanity_failures:
        print(
            f"FAILED: scim2-tester {len(tester_failures)} ERROR/CRITICAL, "
            f"scim-sanity {len(sanity_failures)} FAIL/ERROR"
        )
        for r in tester_failures:
            print(f"  scim2-tester {r.status.name} [{r.resource_type}] {r.title}: {r.reason}")
        for r in sanity_failures:
            print(f"  scim-sanity {r['status'].upper()} {r['name']}: {r.get('message', '')}")
        sys.exit(1)
    print("SCIM conformance: passed")


if __name__ == "__main__":
    main()
