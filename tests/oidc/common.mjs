// Shared pieces of the two OpenID provider oracles: argument parsing, signing keys, the account
// store the tests control, and the small JSON helpers of the control endpoint.

import {
  createHmac, createPrivateKey, generateKeyPairSync, randomBytes, sign,
} from 'node:crypto';
import { parseArgs } from 'node:util';

/** The algorithms a signing key can be generated for. */
export const KEY_ALGS = new Set(['RS256', 'ES256']);

/**
 * Reads the options shared by both scripts from argv, with environment fallbacks:
 * --redirect-uri (repeatable, or OIDC_REDIRECT_URIS separated by spaces), --alg (OIDC_ALG),
 * --auth-method (OIDC_AUTH_METHOD), --client-id (OIDC_CLIENT_ID), --client-secret
 * (OIDC_CLIENT_SECRET).
 */
export function readOptions() {
  const { values } = parseArgs({
    options: {
      'redirect-uri': { type: 'string', multiple: true },
      alg: { type: 'string' },
      'auth-method': { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
    },
    strict: true,
  });
  const env = process.env;
  const redirectUris = values['redirect-uri']
    ?? (env.OIDC_REDIRECT_URIS ? env.OIDC_REDIRECT_URIS.split(/\s+/).filter(Boolean) : []);
  if (redirectUris.length === 0) {
    fail('at least one --redirect-uri (or OIDC_REDIRECT_URIS) is required');
  }
  for (const uri of redirectUris) {
    try {
      new URL(uri);
    } catch {
      fail(`redirect URI ${JSON.stringify(uri)} is not a URL`);
    }
  }
  const alg = values.alg ?? env.OIDC_ALG ?? 'RS256';
  if (!KEY_ALGS.has(alg)) fail(`--alg must be one of ${[...KEY_ALGS].join(', ')}, not ${alg}`);
  const authMethod = values['auth-method'] ?? env.OIDC_AUTH_METHOD ?? 'client_secret_basic';
  if (!['client_secret_basic', 'client_secret_post'].includes(authMethod)) {
    fail(`--auth-method must be client_secret_basic or client_secret_post, not ${authMethod}`);
  }
  return {
    redirectUris,
    alg,
    authMethod,
    clientId: values['client-id'] ?? env.OIDC_CLIENT_ID ?? `orgplane-${randomId(6)}`,
    clientSecret: values['client-secret'] ?? env.OIDC_CLIENT_SECRET ?? randomId(32),
  };
}

/** Prints a message on stderr and exits with status 2 (bad configuration). */
export function fail(message) {
  process.stderr.write(`oidc oracle: ${message}\n`);
  process.exit(2);
}

/** A random URL-safe identifier of `bytes` random bytes. */
export function randomId(bytes) {
  return randomBytes(bytes).toString('base64url');
}

/**
 * A fresh private signing key as a JWK for `alg`, with `use`, `alg` and, unless `kid` is
 * false, a random `kid`.
 */
export function generateSigningKey(alg, { kid = true } = {}) {
  const pair = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, use: 'sig', alg, ...(kid ? { kid: `k-${randomId(9)}` } : {}) };
}

/**
 * Signs a JWS synchronously (the mock's hooks are synchronous): `header` is an object, `payload`
 * the already base64url-encoded payload segment, `key` a private JWK (RS256, ES256), the HMAC
 * secret (HS256) or nothing (`none`, an empty signature).
 */
export function signJws(header, payload, key) {
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${payload}`;
  let signature;
  switch (header.alg) {
    case 'none':
      signature = '';
      break;
    case 'HS256':
      signature = createHmac('sha256', key).update(input).digest('base64url');
      break;
    case 'RS256':
      signature = sign('sha256', Buffer.from(input), createPrivateKey({ key, format: 'jwk' }))
        .toString('base64url');
      break;
    case 'ES256':
      signature = sign('sha256', Buffer.from(input), {
        key: createPrivateKey({ key, format: 'jwk' }),
        dsaEncoding: 'ieee-p1363',
      }).toString('base64url');
      break;
    default:
      throw new Error(`cannot sign ${header.alg}`);
  }
  return `${input}.${signature}`;
}

/** The decoded header of a compact JWS. */
export function jwsHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8'));
}

/** The public half of a private JWK. */
export function publicJwk(jwk) {
  const { d, p, q, dp, dq, qi, ...rest } = jwk;
  return rest;
}

/**
 * The accounts the tests control. An account is `{ sub, email, email_verified, amr }`; the
 * authorization request's `login_hint` names it by email or sub, and without a hint the account
 * upserted last signs in.
 */
export class Accounts {
  #bySub = new Map();

  #last;

  /** Validates and stores an account, replacing the one with the same `sub`. */
  upsert(input) {
    if (typeof input?.sub !== 'string' || input.sub === '') throw new Error('sub must be a non-empty string');
    if (input.email !== undefined && typeof input.email !== 'string') throw new Error('email must be a string');
    if (input.email_verified !== undefined && typeof input.email_verified !== 'boolean') {
      throw new Error('email_verified must be a boolean');
    }
    if (input.amr !== undefined && !(Array.isArray(input.amr) && input.amr.every((v) => typeof v === 'string'))) {
      throw new Error('amr must be an array of strings');
    }
    const account = {
      sub: input.sub,
      email: input.email,
      email_verified: input.email_verified ?? true,
      amr: input.amr ?? ['pwd'],
    };
    this.#bySub.set(account.sub, account);
    this.#last = account;
    return account;
  }

  /** The account a `login_hint` names (email, case-insensitive, or sub); the last one without. */
  resolve(loginHint) {
    if (loginHint === undefined || loginHint === '') return this.#last;
    const hint = loginHint.toLowerCase();
    for (const account of this.#bySub.values()) {
      if (account.sub === loginHint || account.email?.toLowerCase() === hint) return account;
    }
    return undefined;
  }

  /** The account with this `sub`. */
  get(sub) {
    return this.#bySub.get(sub);
  }
}

/** Reads a request body as JSON (an empty body is `{}`). */
export async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  return JSON.parse(text);
}

/** Answers a JSON body with a status. */
export function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Runs a control route: the handler's result is answered as 200 JSON, an error as 400 with its
 * message.
 */
export async function control(req, res, handler) {
  try {
    const body = req.method === 'POST' ? await readJson(req) : {};
    sendJson(res, 200, (await handler(body)) ?? {});
  } catch (err) {
    sendJson(res, 400, { error: String(err?.message ?? err) });
  }
}

/**
 * Prints the ready line: one JSON object on stdout. From then on stdout carries nothing else
 * (the libraries' console output goes to stderr), and a reader that stopped listening is no
 * reason to die.
 */
export function announce(fields) {
  process.stdout.on('error', () => {});
  process.stdout.write(`${JSON.stringify(fields)}\n`);
  const toStderr = (...args) => console.error(...args);
  console.log = toStderr;
  console.info = toStderr;
  console.warn = toStderr;
}

/** Exits when stdin closes, so a test's child never outlives the test process. */
export function exitWithParent() {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
