// A scriptable OpenID provider (oauth2-mock-server 8) that issues the bad ID tokens a relying
// party must refuse (rule ID-13), on 127.0.0.1 and a port of the system's choosing. The test
// picks the shape of the next token over the control endpoint; the hooks `beforeTokenSigning`
// (claims) and `beforeResponse` (signature, errors) apply it.
//
// oauth2-mock-server 8 remembers the nonce and the PKCE challenge per code, but it accepts any
// code, reuses codes, never checks the client or the redirect URI, takes a missing
// code_verifier, allows `plain` PKCE and advertises `none` client authentication and RS256 only.
// This script fills those gaps so that a well-behaved relying party is the only kind that gets a
// good token: codes are single-use and bound to client, redirect URI and account; S256 PKCE is
// required; the client authenticates with client_secret_basic or client_secret_post; discovery
// says so.
//
// Usage: node mock.mjs --redirect-uri URI [--redirect-uri URI…] [--client-id ID]
//          [--client-secret SECRET]
// Ready line on stdout: {"issuer","client_id","client_secret","control","alg","auth_method"}.
// Control (JSON over HTTP, same port, under /control):
//   POST /control/accounts        {sub, email, email_verified, amr}  upsert an account
//   POST /control/shape           {shape}  shape the next issued ID token (shapes add up)
//   POST /control/discovery       {field: value|null}  override (null: remove) discovery fields
//   GET  /control/token-requests  what the relying party sent to the token endpoint
//   GET  /control/keys            {rs256_kid, es256_kid, foreign_kid}

import { createServer } from 'node:http';

import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

import {
  Accounts, announce, control, exitWithParent, generateSigningKey, jwsHeader, publicJwk,
  readOptions, sendJson, signJws,
} from './common.mjs';

/** Shapes applied to the claims before signing. */
const CLAIM_SHAPES = new Set([
  'wrong_audience', 'wrong_issuer', 'wrong_nonce', 'no_nonce', 'expired', 'email_unverified',
]);
/** Shapes applied to the signature after signing. */
const SIGNATURE_SHAPES = new Set([
  'es256', 'alg_none', 'hs256_client_secret', 'unknown_key', 'forged_kid', 'no_kid',
]);
/** Shapes of the token endpoint's answer. */
const RESPONSE_SHAPES = new Set(['token_error', 'server_error']);

const options = readOptions();
const accounts = new Accounts();
const rsKey = generateSigningKey('RS256');
// In the JWKS, so an ES256 token verifies unless the relying party pins its algorithms.
const esKey = generateSigningKey('ES256');
// Never published: tokens it signs verify against no key of the JWKS.
const foreignKey = generateSigningKey('RS256');

/** code -> { redirectUri, sub, used } for the codes the authorization endpoint issued. */
const codes = new Map();
/** The token requests received, for tests that check how the relying party authenticates. */
const tokenRequests = [];
let pendingShapes = new Set();
let discoveryOverrides = {};

const oauthIssuer = new OAuth2Issuer();
await oauthIssuer.keys.add(rsKey);
const service = new OAuth2Service(oauthIssuer);

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (path.startsWith('/control/')) return routeControl(path, req, res);
  if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
    return sendJson(res, 200, discovery());
  }
  if (req.method === 'GET' && path === '/jwks') {
    return sendJson(res, 200, { keys: [publicJwk(rsKey), publicJwk(esKey)] });
  }
  if (path === '/authorize-error') {
    return sendJson(res, 400, Object.fromEntries(new URL(req.url, 'http://localhost').searchParams));
  }
  return service.requestHandler(req, res);
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
oauthIssuer.url = issuer;

service.on('beforeAuthorizeRedirect', checkAuthorization);
service.on('beforeTokenSigning', shapeClaims);
service.on('beforeResponse', checkAndShapeResponse);

announce({
  issuer,
  client_id: options.clientId,
  client_secret: options.clientSecret,
  control: `${issuer}/control`,
  alg: 'RS256',
  auth_method: 'client_secret_basic',
});
exitWithParent();

function discovery() {
  const doc = {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    userinfo_endpoint: `${issuer}/userinfo`,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code'],
    subject_types_supported: ['public'],
    scopes_supported: ['openid', 'email', 'profile'],
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nonce', 'email', 'email_verified', 'amr'],
    id_token_signing_alg_values_supported: ['RS256', 'ES256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    code_challenge_methods_supported: ['S256'],
  };
  for (const [field, value] of Object.entries(discoveryOverrides)) {
    if (value === null) delete doc[field];
    else doc[field] = value;
  }
  return doc;
}

/**
 * Validates the authorization request the library answered with a code: client, redirect URI,
 * `openid` scope, S256 PKCE and an account for `login_hint`. A bad redirect URI is answered on
 * the provider's own error page, other errors on the redirect URI (without the code).
 */
function checkAuthorization(redirect, req) {
  const q = req.query;
  const code = redirect.url.searchParams.get('code');
  const refuse = (error, description) => {
    redirect.url.searchParams.delete('code');
    redirect.url.searchParams.set('error', error);
    redirect.url.searchParams.set('error_description', description);
  };
  if (q.client_id !== options.clientId || !options.redirectUris.includes(q.redirect_uri)) {
    const page = new URL(`${issuer}/authorize-error`);
    page.searchParams.set('error', 'invalid_request');
    page.searchParams.set('error_description', 'unknown client_id or unregistered redirect_uri');
    redirect.url = page;
    return;
  }
  if (code === null) return;
  if (!String(q.scope ?? '').split(' ').includes('openid')) {
    refuse('invalid_scope', 'the openid scope is required');
  } else if (typeof q.code_challenge !== 'string' || q.code_challenge_method !== 'S256') {
    refuse('invalid_request', 'PKCE with code_challenge_method S256 is required');
  } else if (typeof q.nonce !== 'string' || q.nonce === '') {
    refuse('invalid_request', 'nonce is required');
  } else {
    const account = accounts.resolve(q.login_hint);
    if (!account) {
      refuse('access_denied', `no account for login_hint ${JSON.stringify(q.login_hint ?? '')}`);
    } else {
      codes.set(code, { redirectUri: q.redirect_uri, sub: account.sub, used: false });
    }
  }
}

/** The ID token's claims: the account's, then the pending claim shapes. */
function shapeClaims(token, req) {
  const { payload } = token;
  // The library signs the access token first (it carries `scope`), then the ID token.
  if ('scope' in payload || req.body?.grant_type !== 'authorization_code') return;
  const grant = codes.get(req.body.code);
  const account = grant && accounts.get(grant.sub);
  if (account) {
    payload.sub = account.sub;
    if (account.email !== undefined) payload.email = account.email;
    payload.email_verified = account.email_verified;
    payload.amr = account.amr;
  }
  payload.aud = options.clientId;
  const now = Math.floor(Date.now() / 1000);
  if (pendingShapes.has('wrong_audience')) payload.aud = 'someone-else';
  if (pendingShapes.has('wrong_issuer')) payload.iss = 'https://issuer.invalid';
  if (pendingShapes.has('wrong_nonce')) payload.nonce = 'not-the-nonce-you-sent';
  if (pendingShapes.has('no_nonce')) delete payload.nonce;
  if (pendingShapes.has('expired')) {
    payload.iat = now - 7200;
    payload.nbf = now - 7200;
    payload.exp = now - 3600;
  }
  if (pendingShapes.has('email_unverified')) payload.email_verified = false;
}

/** How the client authenticated: `basic`, `post`, or `none`, and whether the secret matched. */
function clientAuth(req) {
  const header = req.headers.authorization ?? '';
  if (header.startsWith('Basic ')) {
    // RFC 6749 2.3.1: both are form-urlencoded before they are joined.
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const formDecode = (v) => {
      try {
        return decodeURIComponent(v.replaceAll('+', ' '));
      } catch {
        return undefined;
      }
    };
    const ok = colon > 0
      && formDecode(decoded.slice(0, colon)) === options.clientId
      && formDecode(decoded.slice(colon + 1)) === options.clientSecret;
    return { method: 'basic', ok };
  }
  if (req.body?.client_secret !== undefined) {
    const ok = req.body.client_id === options.clientId && req.body.client_secret === options.clientSecret;
    return { method: 'post', ok };
  }
  return { method: 'none', ok: false };
}

/**
 * The token endpoint's checks the library lacks (client, single-use code bound to the redirect
 * URI, PKCE verifier present), then the pending signature and response shapes.
 */
function checkAndShapeResponse(response, req) {
  const body = req.body ?? {};
  const auth = clientAuth(req);
  const grant = codes.get(body.code);
  const record = {
    grant_type: body.grant_type,
    client_auth: auth.method,
    code_verifier: typeof body.code_verifier === 'string',
    redirect_uri: body.redirect_uri,
  };
  tokenRequests.push(record);
  const refuse = (status, error, description) => {
    response.statusCode = status;
    response.body = { error, error_description: description };
    record.outcome = error;
  };
  if (!auth.ok) return refuse(401, 'invalid_client', 'client authentication failed');
  if (body.grant_type !== 'authorization_code') {
    return refuse(400, 'unsupported_grant_type', 'only authorization_code');
  }
  if (!grant || grant.used) return refuse(400, 'invalid_grant', 'unknown or used code');
  grant.used = true;
  if (body.redirect_uri !== grant.redirectUri) {
    return refuse(400, 'invalid_grant', 'redirect_uri differs from the authorization request');
  }
  if (!record.code_verifier) return refuse(400, 'invalid_grant', 'code_verifier is required');

  const shapes = pendingShapes;
  pendingShapes = new Set();
  if (shapes.has('token_error')) return refuse(400, 'invalid_grant', 'refused by the test');
  if (shapes.has('server_error')) return refuse(500, 'server_error', 'failing on purpose');
  record.outcome = 'issued';
  const idToken = response.body.id_token;
  const payload = idToken.split('.')[1];
  const header = jwsHeader(idToken);
  if (shapes.has('es256')) {
    response.body.id_token = signJws({ typ: 'JWT', alg: 'ES256', kid: esKey.kid }, payload, esKey);
  } else if (shapes.has('alg_none')) {
    response.body.id_token = signJws({ typ: 'JWT', alg: 'none' }, payload);
  } else if (shapes.has('hs256_client_secret')) {
    response.body.id_token = signJws({ typ: 'JWT', alg: 'HS256' }, payload, options.clientSecret);
  } else if (shapes.has('unknown_key')) {
    response.body.id_token = signJws({ ...header, kid: foreignKey.kid }, payload, foreignKey);
  } else if (shapes.has('forged_kid')) {
    response.body.id_token = signJws({ ...header, kid: rsKey.kid }, payload, foreignKey);
  } else if (shapes.has('no_kid')) {
    const { kid, ...rest } = header;
    response.body.id_token = signJws(rest, payload, rsKey);
  }
  return undefined;
}

function routeControl(path, req, res) {
  switch (`${req.method} ${path}`) {
    case 'POST /control/accounts':
      return control(req, res, (body) => accounts.upsert(body));
    case 'POST /control/shape':
      return control(req, res, ({ shape }) => {
        if (!CLAIM_SHAPES.has(shape) && !SIGNATURE_SHAPES.has(shape) && !RESPONSE_SHAPES.has(shape)) {
          throw new Error(`unknown shape ${JSON.stringify(shape)}`);
        }
        pendingShapes.add(shape);
        return { pending: [...pendingShapes] };
      });
    case 'POST /control/discovery':
      return control(req, res, (body) => {
        discoveryOverrides = { ...discoveryOverrides, ...body };
        return discovery();
      });
    case 'GET /control/token-requests':
      return control(req, res, () => ({ requests: tokenRequests }));
    case 'GET /control/keys':
      return control(req, res, () => ({
        rs256_kid: rsKey.kid, es256_kid: esKey.kid, foreign_kid: foreignKey.kid,
      }));
    default:
      return sendJson(res, 404, { error: `no control route ${req.method} ${path}` });
  }
}
