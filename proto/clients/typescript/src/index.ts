// @orgplane/client: the Orgplane API for TypeScript (protobuf-es v2 messages, Connect v2
// service descriptors), generated at build time from proto/orgplane, plus typed error reasons.
//
// Messages live in one namespace per proto package (named as the Go packages are), because
// some names repeat across packages (ListAuditEventsRequest is in four of them):
//   import { create } from "@bufbuild/protobuf";
//   import { identityv1 } from "@orgplane/client";
//   create(identityv1.SignUpRequestSchema, { email, password, ... });
// The same modules can be imported directly: "@orgplane/client/gen/orgplane/identity/v1/index".
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { IdentityService } from "./gen/orgplane/identity/v1/identity_pb.js";
import { OrganizationService } from "./gen/orgplane/organization/v1/organization_pb.js";
import { AccountService } from "./gen/orgplane/organization/v1/account_pb.js";
import { WorkspaceService } from "./gen/orgplane/workspace/v1/workspace_pb.js";
import { BillingAccessService } from "./gen/orgplane/billing/v1/billing_pb.js";
import { EventService } from "./gen/orgplane/events/v1/events_pb.js";

export * as identityv1 from "./gen/orgplane/identity/v1/index.js";
export * as organizationv1 from "./gen/orgplane/organization/v1/index.js";
export * as workspacev1 from "./gen/orgplane/workspace/v1/index.js";
export * as billingv1 from "./gen/orgplane/billing/v1/index.js";
export * as auditv1 from "./gen/orgplane/audit/v1/index.js";
export * as eventsv1 from "./gen/orgplane/events/v1/index.js";
export * as errorsv1 from "./gen/orgplane/errors/v1/index.js";
/** google.rpc: Status and the error details (ErrorInfo, BadRequest, RetryInfo, QuotaFailure…). */
export * as rpc from "./gen/google/rpc/index.js";

// The service descriptors (for createClient) and what every caller needs, at the top level.
export {
  IdentityService,
  OrganizationService,
  AccountService,
  WorkspaceService,
  BillingAccessService,
  EventService,
};
export { ErrorReason, ErrorReasonSchema } from "./gen/orgplane/errors/v1/errors_pb.js";
export {
  ErrorInfoSchema,
  BadRequestSchema,
  RetryInfoSchema,
  QuotaFailureSchema,
  PreconditionFailureSchema,
  type ErrorInfo,
  type BadRequest,
  type BadRequest_FieldViolation,
} from "./gen/google/rpc/error_details_pb.js";
export {
  ORGPLANE_ERROR_DOMAIN,
  errorInfo,
  errorReason,
  errorReasonName,
  fieldViolations,
  isErrorReason,
  parseErrorReason,
} from "./errors.js";
export { bearer, bearerAuth, type TokenSource } from "./auth.js";
export { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";

/** One Connect client per Orgplane service, all on one transport (`orgplane all`'s port). */
export interface OrgplaneClients {
  identity: Client<typeof IdentityService>;
  organizations: Client<typeof OrganizationService>;
  /** Accounts and subaccounts of organizations (served by the organization service). */
  accounts: Client<typeof AccountService>;
  workspaces: Client<typeof WorkspaceService>;
  billing: Client<typeof BillingAccessService>;
  events: Client<typeof EventService>;
}

/** Creates the clients of every Orgplane service on `transport`. */
export function createOrgplaneClients(transport: Transport): OrgplaneClients {
  return {
    identity: createClient(IdentityService, transport),
    organizations: createClient(OrganizationService, transport),
    accounts: createClient(AccountService, transport),
    workspaces: createClient(WorkspaceService, transport),
    billing: createClient(BillingAccessService, transport),
    events: createClient(EventService, transport),
  };
}
