// A real, OpenID-certified provider (panva's oidc-provider) for the identity tests' SSO sign-in
// (rule ID-13), on 127.0.0.1 and a port of the system's choosing. One client (authorization
// code, PKCE required, client_secret_basic or client_secret_post), ID tokens signed RS256 (or
// ES256) with `email`, `email_verified` and `amr` of an account the test upserts. The login and
// consent interactions complete without a browser: the account named by `login_hint` signs in
// and consents, so a client following redirects from the authorization URL (keeping cookies)
// lands on `<redirect_uri>?code=…&state=…`.
//
// Usage: node provider.mjs --redirect-uri URI [--redirect-uri URI…] [--alg RS256|ES256]
//          [--auth-method client_secret_basic|client_secret_post] [--client-id ID]
//          [--client-secret SECRET]
// Ready line on stdout: {"issuer","client_id","client_secret","control","alg","auth_method"}.
// Control (JSON over HTTP, same port, under /control):
//   POST /control/accounts          {sub, email, email_verified, amr}  upsert an account
//   POST /control/rotate-key        new signing key, the old one leaves the JWKS -> {kid, previous_kid}
//   POST /control/keys-without-kid  one fresh key, no `kid` in the JWKS nor in token headers
//   GET  /control/state             {kids, without_kid}

import { createServer } from 'node:http';

import Provider from 'oidc-provider';

import {
  Accounts, announce, control, exitWithParent, generateSigningKey, jwsHeader, randomId, readOptions,
  sendJson, signJws,
} from './common.mjs';

const options = readOptions();
const accounts = new Accounts();
const cookieKeys = [randomId(32)];

let signingKeys = [generateSigningKey(options.alg)];
let withoutKid = false;
let provider;
let handle;

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (path.startsWith('/control/')) {
    routeControl(path, req, res);
  } else if (req.method === 'GET' && path.startsWith('/interaction/')) {
    interact(req, res).catch((err) => sendJson(res, 500, { error: String(err?.message ?? err) }));
  } else {
    handle(req, res);
  }
});

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
rebuild();

announce({
  issuer,
  client_id: options.clientId,
  client_secret: options.clientSecret,
  control: `${issuer}/control`,
  alg: options.alg,
  auth_method: options.authMethod,
});
exitWithParent();

/**
 * (Re)creates the provider over the current signing keys. Sessions, interactions, codes and
 * grants live in oidc-provider's process-wide memory adapter, so a flow started before a key
 * change completes after it.
 */
function rebuild() {
  provider = new Provider(issuer, {
    clients: [{
      client_id: options.clientId,
      client_secret: options.clientSecret,
      redirect_uris: options.redirectUris,
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: options.authMethod,
      id_token_signed_response_alg: options.alg,
    }],
    jwks: { keys: signingKeys },
    cookies: { keys: cookieKeys },
    claims: {
      // amr and auth_time come from the login (the account's amr), not from the account's claims.
      openid: ['sub', 'amr', 'auth_time'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    // Scope-requested claims go into the ID token, as most providers do for code flows.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, email: account.email, email_verified: account.email_verified };
        },
      };
    },
  });
  provider.use(stripKids);
  handle = provider.callback();
}

/**
 * In the "without kid" mode, removes `kid` from the JWKS and re-signs ID tokens (same key, same
 * payload) with a header that has none: oidc-provider itself always names the key.
 */
async function stripKids(ctx, next) {
  await next();
  if (!withoutKid || ctx.status !== 200 || typeof ctx.body !== 'object' || ctx.body === null) return;
  if (Array.isArray(ctx.body.keys)) {
    ctx.body = { keys: ctx.body.keys.map(({ kid, ...key }) => key) };
  } else if (typeof ctx.body.id_token === 'string') {
    const { kid, ...header } = jwsHeader(ctx.body.id_token);
    const payload = ctx.body.id_token.split('.')[1];
    ctx.body = { ...ctx.body, id_token: signJws(header, payload, signingKeys[0]) };
  }
}

/**
 * The login and consent prompts, answered without a page: login signs in the account named by
 * `login_hint` (access_denied when there is none), consent grants what was asked.
 */
async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const account = accounts.resolve(params.login_hint);
    if (!account) {
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: `no account for login_hint ${JSON.stringify(params.login_hint ?? '')}`,
      }, { mergeWithLastSubmission: false });
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId: account.sub, amr: account.amr },
    }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function routeControl(path, req, res) {
  switch (`${req.method} ${path}`) {
    case 'POST /control/accounts':
      return control(req, res, (body) => accounts.upsert(body));
    case 'POST /control/rotate-key':
      return control(req, res, () => {
        const previous = signingKeys[0].kid;
        withoutKid = false;
        signingKeys = [generateSigningKey(options.alg)];
        rebuild();
        return { kid: signingKeys[0].kid, previous_kid: previous };
      });
    case 'POST /control/keys-without-kid':
      return control(req, res, () => {
        withoutKid = true;
        // oidc-provider names every key internally; the kid is removed on the way out.
        signingKeys = [generateSigningKey(options.alg)];
        rebuild();
        return {};
      });
    case 'GET /control/state':
      return control(req, res, () => ({ kids: signingKeys.map((k) => k.kid), without_kid: withoutKid }));
    default:
      return sendJson(res, 404, { error: `no control route ${req.method} ${path}` });
  }
}
