import type { Interceptor } from "@connectrpc/connect";

/** A bearer token, or a function giving the current one (called on every request). */
export type TokenSource = string | (() => string | undefined | Promise<string | undefined>);

/**
 * An interceptor that sends `authorization: Bearer <token>` on every call made through the
 * transport it is given to. A request that already has an `authorization` header (set per
 * call, see `bearer()`) keeps it; a source answering undefined sends nothing (SignUp, Login…).
 */
export function bearerAuth(token: TokenSource): Interceptor {
  return (next) => async (req) => {
    if (!req.header.has("authorization")) {
      const value = typeof token === "string" ? token : await token();
      if (value) req.header.set("authorization", `Bearer ${value}`);
    }
    return next(req);
  };
}

/**
 * Per-call headers: `authorization: Bearer <token>`, and, when given, the read-your-writes
 * header `x-min-organization-revision` (a `revision` from an OrganizationService mutating
 * response). Use as CallOptions: `client.getOrganization(req, { headers: bearer(token) })`.
 */
export function bearer(token: string, minOrganizationRevision?: bigint): Record<string, string> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (minOrganizationRevision !== undefined && minOrganizationRevision > 0n) {
    headers["x-min-organization-revision"] = minOrganizationRevision.toString();
  }
  return headers;
}
