// Reading the structured details of a refused call. Every error an Orgplane service answers
// carries a google.rpc.Status in the `grpc-status-details-bin` trailer; Connect decodes it into
// ConnectError.details, and findDetails() unpacks the ones of a given type.
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  type BadRequest_FieldViolation,
  type ErrorInfo,
} from "./gen/google/rpc/error_details_pb.js";
import { ErrorReason, ErrorReasonSchema } from "./gen/orgplane/errors/v1/errors_pb.js";

/** The `ErrorInfo.domain` of every Orgplane error. */
export const ORGPLANE_ERROR_DOMAIN = "orgplane.dev";

let byName: Map<string, ErrorReason> | undefined;

/**
 * Parses an `ErrorInfo.reason` string (the value's name, e.g. "EMAIL_NOT_VERIFIED") into the
 * enum. A name this client does not know — the server is newer than this package — gives
 * `ErrorReason.ERROR_REASON_UNSPECIFIED`: handle the error by its status code then.
 */
export function parseErrorReason(name: string): ErrorReason {
  if (byName === undefined) {
    byName = new Map(ErrorReasonSchema.values.map((v) => [v.name, v.number as ErrorReason]));
  }
  return byName.get(name) ?? ErrorReason.ERROR_REASON_UNSPECIFIED;
}

/**
 * The Orgplane ErrorInfo (domain "orgplane.dev") of a failed call, or undefined when `err` is
 * not a ConnectError or carries none (e.g. a connection failure or a client-side deadline).
 * `info.reason` is the raw string (useful in logs); `info.metadata` the reason's parameters.
 */
export function errorInfo(err: unknown): ErrorInfo | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  return err.findDetails(ErrorInfoSchema).find((i) => i.domain === ORGPLANE_ERROR_DOMAIN);
}

/**
 * The reason of a failed Orgplane call, as the enum:
 * - `undefined`: `err` is not a ConnectError, or it carries no Orgplane ErrorInfo (the call did
 *   not get an answer from Orgplane: connection refused, client-side deadline, a proxy…);
 * - `ErrorReason.ERROR_REASON_UNSPECIFIED`: Orgplane sent a reason this client version does not
 *   know (see `errorInfo(err)?.reason` for the string); treat it by `err.code`;
 * - otherwise the reason.
 *
 * ```ts
 * try { await orgs.createOrganization(req) } catch (err) {
 *   if (errorReason(err) === ErrorReason.EMAIL_NOT_VERIFIED) showVerifyBanner();
 *   else throw err;
 * }
 * ```
 */
export function errorReason(err: unknown): ErrorReason | undefined {
  const info = errorInfo(err);
  return info === undefined ? undefined : parseErrorReason(info.reason);
}

/** The name of `errorReason(err)` ("EMAIL_NOT_VERIFIED"), for logs and messages. */
export function errorReasonName(reason: ErrorReason | undefined): string | undefined {
  return reason === undefined ? undefined : ErrorReasonSchema.value[reason]?.name;
}

/**
 * True when `err` is a ConnectError with `reason` (and, when given, status `code`).
 * `isErrorReason(err, ErrorReason.ETAG_MISMATCH, Code.Aborted)`.
 */
export function isErrorReason(err: unknown, reason: ErrorReason, code?: Code): boolean {
  if (errorReason(err) !== reason) return false;
  return code === undefined || (err as ConnectError).code === code;
}

/**
 * The BadRequest field violations of an INVALID_ARGUMENT error (field paths in the request,
 * e.g. "password", "organization.name"); empty when there are none.
 */
export function fieldViolations(err: unknown): BadRequest_FieldViolation[] {
  if (!(err instanceof ConnectError)) return [];
  return err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations);
}
