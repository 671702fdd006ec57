// The TypeScript client story, run by tests/clients/typescript.sh against a running orgplane.
// It consumes @orgplane/client exactly as a client team would (installed from the repo path,
// type-checked against the package's .d.ts) over gRPC from Node:
//
//   a business owner signs up — a short password is refused (INVALID_ARGUMENT, BadRequest
//   field "password") — and is refused CreateOrganization before verifying the email
//   (FAILED_PRECONDITION, ErrorReason.EMAIL_NOT_VERIFIED, read as the enum); verifies by the
//   mailed link, logs in, creates an organization, invites a developer who signs up, verifies,
//   logs in and accepts the mailed invite; the owner creates a workspace; CheckAccess says who
//   may read what; the developer is refused the billing account (INSUFFICIENT_ROLE).
//
// Environment: ORGPLANE_URL (http://host:port) or ORGPLANE_ADDR (host:port), ORGPLANE_MAIL_DIR.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { create, toJsonString } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  ErrorReason,
  bearer,
  billingv1,
  createOrgplaneClients,
  errorInfo,
  errorReason,
  errorReasonName,
  fieldViolations,
  parseErrorReason,
  identityv1,
  organizationv1,
  workspacev1,
  type OrgplaneClients,
} from "@orgplane/client";
import { createOrgplaneTransport } from "@orgplane/client/node";

const url = process.env.ORGPLANE_URL ?? `http://${need("ORGPLANE_ADDR")}`;
const mailDir = need("ORGPLANE_MAIL_DIR");
const PASSWORD = "correct horse battery staple";
const RUN = randomUUID().slice(0, 8); // unique addresses: the story also runs against a used server

function need(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const email = (name: string) => `${name}.${RUN}@example.com`;

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** The first group of `pattern` in the newest mail to `to` (the .eml files in the mail dir). */
async function mailed(to: string, pattern: RegExp): Promise<string> {
  const toLine = new RegExp(`^To: .*${to.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`, "m");
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    let files: string[] = [];
    try {
      files = readdirSync(mailDir).filter((f) => f.endsWith(".eml")).map((f) => join(mailDir, f));
    } catch {
      // not created before the first mail
    }
    files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    for (const file of files) {
      const text = readFileSync(file, "utf8");
      if (!toLine.test(text)) continue;
      const match = pattern.exec(text);
      if (match) return match[1];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail to ${to} matching ${pattern}`);
}

/** Runs `call`, which must be refused with `code`; returns the error. */
async function refused(what: string, call: () => Promise<unknown>, code: Code): Promise<ConnectError> {
  try {
    await call();
  } catch (err) {
    check(err instanceof ConnectError, `${what}: not a ConnectError: ${err}`);
    check(err.code === code, `${what}: ${Code[err.code]} != ${Code[code]}: ${err.rawMessage}`);
    check(errorInfo(err)?.domain === "orgplane.dev", `${what}: ErrorInfo domain orgplane.dev`);
    return err;
  }
  throw new Error(`${what}: expected ${Code[code]}, the call succeeded`);
}

async function signUp(c: OrgplaneClients, address: string, name: string) {
  const { user } = await c.identity.signUp({
    email: address,
    password: PASSWORD,
    displayName: name,
    accountType: identityv1.AccountType.BUSINESS,
  });
  check(user && !user.emailVerified, "a new user's email is not verified");
  return user.id;
}

async function verify(c: OrgplaneClients, address: string) {
  const token = await mailed(address, /verify-email\?token=(\S+)/);
  const { user } = await c.identity.verifyEmail({ token });
  check(user?.emailVerified, `${address} verified`);
}

async function login(c: OrgplaneClients, address: string) {
  const resp = await c.identity.login({ email: address, password: PASSWORD });
  check(resp.user && resp.tokens, `${address} signed in without a second factor`);
  return { userId: resp.user.id, token: resp.tokens.accessToken };
}

async function main() {
  // One transport, no credentials: each call passes its bearer token in its headers.
  const c = createOrgplaneClients(createOrgplaneTransport(url));
  console.log(`typescript client: ${url} (run ${RUN})`);
  // A reason newer than this client parses as ERROR_REASON_UNSPECIFIED (handle it by its code).
  check(parseErrorReason("EMAIL_NOT_VERIFIED") === ErrorReason.EMAIL_NOT_VERIFIED, "known reason");
  check(parseErrorReason("A_REASON_FROM_THE_FUTURE") === ErrorReason.ERROR_REASON_UNSPECIFIED, "unknown reason");

  // 1. Sign-up with a short password: INVALID_ARGUMENT, BadRequest field "password".
  const owner = email("owner");
  const bad = await refused(
    "short password",
    () =>
      c.identity.signUp({
        email: owner,
        password: "short",
        displayName: "Olivia Owner",
        accountType: identityv1.AccountType.BUSINESS,
      }),
    Code.InvalidArgument,
  );
  const fields = fieldViolations(bad).map((v) => v.field);
  check(fields.includes("password"), `BadRequest names password: ${fields}`);
  console.log(
    `  short password refused: INVALID_ARGUMENT, reason ${errorReasonName(errorReason(bad))}, fields [${fields}]`,
  );

  // 2. A business owner signs up and logs in; creating an organization before verifying the
  //    email is refused with the reason read as the enum.
  const ownerId = await signUp(c, owner, "Olivia Owner");
  const { token: ownerToken } = await login(c, owner);
  const createOrg = create(organizationv1.CreateOrganizationRequestSchema, {
    organization: { name: `Acme ${RUN}`, type: organizationv1.OrganizationType.COMPANY },
  });
  const unverified = await refused(
    "CreateOrganization before verifying",
    () => c.organizations.createOrganization(createOrg, { headers: bearer(ownerToken) }),
    Code.FailedPrecondition,
  );
  const reason = errorReason(unverified);
  switch (reason) {
    case ErrorReason.EMAIL_NOT_VERIFIED:
      console.log(`  unverified owner refused: FAILED_PRECONDITION ErrorReason.EMAIL_NOT_VERIFIED (${reason})`);
      break;
    default:
      throw new Error(`expected ErrorReason.EMAIL_NOT_VERIFIED, got ${errorReasonName(reason)}`);
  }

  // 3. Verify by the mailed link; the same access token now may create the organization.
  await verify(c, owner);
  const created = await c.organizations.createOrganization(createOrg, { headers: bearer(ownerToken) });
  const org = created.organization;
  check(org && org.ownerUserId === ownerId, "the owner owns the new organization");
  check(org.state === organizationv1.OrganizationState.ACTIVE, "the organization is ACTIVE");
  check(typeof created.revision === "bigint", "int64 fields are bigint");
  // JSON.stringify throws on bigint; toJsonString writes int64 as a string (proto3 JSON).
  let threw = false;
  try {
    JSON.stringify(created);
  } catch {
    threw = true;
  }
  check(threw, "JSON.stringify throws on a message with an int64 (bigint) field");
  const json = toJsonString(organizationv1.CreateOrganizationResponseSchema, created);
  check(json.includes(`"revision":"${created.revision}"`), `toJsonString writes int64 as string: ${json}`);
  console.log(`  created ${org.id} at revision ${created.revision}n (JSON: "revision":"${created.revision}")`);

  // 4. Invite a developer; they sign up, verify, log in and accept the mailed invite.
  const dana = email("dana");
  await c.organizations.createInvite(
    { organizationId: org.id, invite: { email: dana, role: organizationv1.OrgRole.DEVELOPER } },
    { headers: bearer(ownerToken) },
  );
  const danaId = await signUp(c, dana, "Dana Developer");
  await verify(c, dana);
  const { token: danaToken } = await login(c, dana);
  const inviteId = await mailed(dana, /\/invites\/(inv_\w+)/);
  // Dana's own transport sends her token on every call (the bearerAuth interceptor).
  const asDana = createOrgplaneClients(createOrgplaneTransport(url, { token: danaToken }));
  const accepted = await asDana.organizations.acceptInvite({ inviteId });
  check(accepted.member?.role === organizationv1.OrgRole.DEVELOPER, "Dana joined as DEVELOPER");
  const revision = accepted.revision > created.revision ? accepted.revision : created.revision;
  const members = await c.organizations.listMembers({ organizationId: org.id }, { headers: bearer(ownerToken) });
  check(
    members.members.map((m) => m.role).join() ===
      [organizationv1.OrgRole.OWNER, organizationv1.OrgRole.DEVELOPER].join(),
    `members are the owner and Dana: ${members.members.map((m) => organizationv1.OrgRole[m.role])}`,
  );
  console.log(`  ${dana} accepted ${inviteId} as DEVELOPER (organization revision ${revision})`);

  // 5. The owner creates a workspace.
  const research = await c.workspaces.createWorkspace(
    { organizationId: org.id, workspace: { name: "Research" } },
    { headers: bearer(ownerToken) },
  );
  const ws = research.workspace;
  check(ws, "a workspace");
  console.log(`  created workspace ${ws.id} "${ws.name}"`);

  // 6. CheckAccess: Dana reads the Default Workspace as WORKSPACE_DEVELOPER, but not Research
  //    (a DEVELOPER only once added); the owner reads Research as WORKSPACE_ADMIN.
  const access = (token: string, userId: string, workspaceId: string) =>
    c.workspaces.checkAccess(
      create(workspacev1.CheckAccessRequestSchema, {
        organizationId: org.id,
        workspaceId,
        subject: { case: "userId", value: userId },
        permission: workspacev1.Permission.READ,
        minOrganizationRevision: revision,
        minWorkspaceRevision: research.workspaceRevision,
      }),
      { headers: bearer(token) },
    );
  const danaDefault = await access(danaToken, danaId, "");
  check(
    danaDefault.allowed && danaDefault.role === workspacev1.WorkspaceRole.DEVELOPER,
    `Dana reads the Default Workspace as developer: ${toJsonString(workspacev1.CheckAccessResponseSchema, danaDefault)}`,
  );
  const danaResearch = await access(danaToken, danaId, ws.id);
  check(!danaResearch.allowed, "Dana, a DEVELOPER not added to Research, may not read it");
  const ownerResearch = await access(ownerToken, ownerId, ws.id);
  check(
    ownerResearch.allowed && ownerResearch.role === workspacev1.WorkspaceRole.ADMIN,
    `the owner reads Research as admin: ${toJsonString(workspacev1.CheckAccessResponseSchema, ownerResearch)}`,
  );
  console.log(
    `  CheckAccess: Dana Default ${workspacev1.WorkspaceRole[danaDefault.role]} allowed, ` +
      `Dana Research denied, owner Research ${workspacev1.WorkspaceRole[ownerResearch.role]} allowed`,
  );

  // 7. A developer reading the billing account: PERMISSION_DENIED, ErrorReason.INSUFFICIENT_ROLE.
  const denied = await refused(
    "Dana reads billing",
    () => asDana.billing.getBillingAccount(create(billingv1.GetBillingAccountRequestSchema, { organizationId: org.id })),
    Code.PermissionDenied,
  );
  check(errorReason(denied) === ErrorReason.INSUFFICIENT_ROLE, `INSUFFICIENT_ROLE, got ${errorInfo(denied)?.reason}`);
  console.log(`  Dana refused billing: PERMISSION_DENIED ErrorReason.INSUFFICIENT_ROLE`);

  console.log("typescript client: story passed");
}

main().catch((err) => {
  console.error(err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage} ${JSON.stringify(errorInfo(err)?.reason)}` : err);
  process.exit(1);
});
