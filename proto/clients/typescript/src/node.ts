// Node.js: gRPC (HTTP/2) transport to an Orgplane server. Import from "@orgplane/client/node".
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport, type GrpcTransportOptions } from "@connectrpc/connect-node";
import { bearerAuth, type TokenSource } from "./auth.js";

export { createGrpcTransport };

export interface OrgplaneTransportOptions
  extends Partial<Omit<GrpcTransportOptions, "baseUrl">> {
  /** Sends `authorization: Bearer <token>` on every call (see `bearerAuth`). */
  token?: TokenSource;
}

/**
 * A gRPC transport to `baseUrl` ("http://127.0.0.1:50051", or https:// behind TLS), which
 * serves all four Orgplane services when run as `orgplane all`. Any other
 * createGrpcTransport option (interceptors, nodeOptions for TLS, defaultTimeoutMs…) passes through.
 */
export function createOrgplaneTransport(
  baseUrl: string,
  options: OrgplaneTransportOptions = {},
): Transport {
  const { token, interceptors = [], ...rest } = options;
  const all: Interceptor[] = token === undefined ? interceptors : [bearerAuth(token), ...interceptors];
  return createGrpcTransport({ ...rest, baseUrl, interceptors: all });
}
