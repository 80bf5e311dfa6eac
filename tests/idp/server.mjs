// The test bench's real OpenID provider: oidc-provider on 127.0.0.1, a random port, fresh keys.
//
// Usage: node tests/idp/server.mjs ['{"client_id": "...", ...}']   (or OIDC_BENCH_SETTINGS=<json>)
// Prints one JSON line on stdout when ready:
//   {"ready": true, "issuer": "http://127.0.0.1:PORT", "admin": "http://127.0.0.1:PORT/__admin", ...}
// Stops when stdin closes (the parent test process died) and on SIGTERM/SIGINT.
// Everything else (oidc-provider's development warnings) goes to stderr.
//
// Settings (all optional; snake_case JSON):
//   client_id              "oauth-auth-test"  the public native client (PKCE, no secret)
//   access_token_ttl       3600    seconds (also the TTL of JWT access tokens for a resource)
//   refresh_token_ttl      86400   seconds
//   id_token_ttl           3600    seconds
//   device_code_ttl        600     seconds
//   rotate_refresh_token   true    true: every refresh rotates; false: never
//   device_interval        1       the "interval" added to device authorization responses
//                                  (oidc-provider sends none, so clients would default to 5 s);
//                                  null leaves it out
//   resource_scope         "api:read api:write"  scopes a resource server (RFC 8707) accepts
//   scopes                 []      extra scope names the provider accepts besides
//                                  openid profile email offline_access
//   audience_param         false   true: an authorization/device request's `audience`
//                                  parameter is treated as `resource` (Auth0 style)
//   api_client_id          "api"   a confidential client (client_secret_basic/post) that may
//   api_client_secret      "api-secret"  introspect any token
//   extra_clients          []      more client metadata objects (oidc-provider format)
//   client_secret          ""      when set, the main client is confidential: it must
//                                  authenticate with this secret (client_secret_basic, or
//                                  client_secret_post in the "github" mode)
//   tenant_id              "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"  the "entra" mode's tenant
//   tls_cert, tls_key      ""      PEM certificate (chain) and key: serve HTTPS (the issuer is
//                                  then https://127.0.0.1:PORT)
//   mode                   ""      a cloud provider's documented quirks (see MODES below):
//                                  "google", "entra", "auth0", "cognito", "gitlab",
//                                  "github", "b2c", "hs256", "hs256_forged",
//                                  "rfc8414"; "" is plain oidc-provider
//   machine_client_id      "machine"         a confidential client for machines:
//   machine_client_secret  "machine-secret"  client_credentials and token exchange grants,
//                                  client_secret_basic
//   machine_jwks           null    a JWKS (public keys): adds the client "machine-jwt", the
//                                  same grants with private_key_jwt signed by those keys
//   exchange_issuer        ""      the issuer whose JWTs the token exchange grant accepts as
//   exchange_jwks_uri      ""      subject tokens (RS256, checked against this JWKS, `aud`
//   exchange_audience      ""      must be exchange_audience when set); "" refuses them all
// access_token_ttl, refresh_token_ttl, id_token_ttl, device_code_ttl, rotate_refresh_token,
// device_interval and the exchange_* settings can be changed at run time with
// POST /__admin/config.
//
// Machines: client_credentials (oidc-provider's own grant) and the RFC 8693 token exchange
// grant (urn:ietf:params:oauth:grant-type:token-exchange, registered below with
// registerGrantType): subject_token_type must be urn:ietf:params:oauth:token-type:jwt; the
// subject token is verified against exchange_jwks_uri (issuer, audience, expiry); an expired
// one is invalid_grant "subject_token has expired", any other failure invalid_grant too. The
// issued access token is a ClientCredentials token of the exchanging client with claims
// `subject` (the subject token's sub), `repository` and `ref` (when present) and `act`; a JWT
// when a `resource` or `audience` names the API, else opaque (introspectable by the "api"
// client either way).
// Every exchange (and every refused one) is listed by GET /__admin/exchanges.
//
// Clients: the public native client (token_endpoint_auth_method none, PKCE S256 required,
// redirect URIs http://127.0.0.1/callback and http://localhost/callback on any port, grants
// authorization_code, refresh_token, device_code) and the confidential "api" client.
// Introspection: the public client may introspect its own tokens (client_id in the body);
// the "api" client (HTTP Basic) any token. Revocation: the public client, its own tokens.
// Refresh tokens: issued whenever offline_access is granted (oidc-provider drops
// offline_access when the request has a `prompt` without `consent`). Reusing a rotated refresh
// token is invalid_grant AND revokes the whole grant (oidc-provider's reuse detection).
// Resource indicators (RFC 8707): a `resource` in the authorization (or device) request makes
// every access token of that grant a JWT with aud = resource, also on refresh without
// `resource`; a token request naming a resource that was not granted is invalid_target.
// The response's `scope` then lists only resource scopes (resource_scope), often "".
//
// Routes: /auth /token /device_authorization /device /revoke /introspect /me /jwks
// /session/end /.well-known/openid-configuration (none is a path prefix of another).
//
// Admin endpoint (JSON; not counted, not subject to faults):
//   GET  /__admin/counts     {"token": {grant_type: {outcome: n}}, "faults": {path: n},
//                             "discovery": n, "jwks": n, "authorization": n,
//                             "device_authorization": n, "revocation": n, "introspection": n,
//                             "userinfo": n, "end_session": n}
//                            outcome: "ok" (200), the OAuth error code, "http_<status>", or
//                            "fault" (answered by an injected fault). "authorization" counts
//                            GET /auth (not the /auth/<uid> resumes).
//   POST /__admin/reset      clears counts
//   POST /__admin/reset-all  clears counts and faults, restores the start settings
//   POST /__admin/fault      {"path": "/token", "count": 1, "status": 503, "body": "..." | {...},
//                             "headers": {"Retry-After": "1"}, "delay_ms": 0, "drop": false,
//                             "method": "POST"?}: the next `count` requests whose path is
//                            `path` or under `path/` get it. delay_ms alone: delay, then serve.
//                            drop: destroy the socket without an answer. "{form:NAME}" in
//                            a /token fault's body is the posted NAME (an echoing provider).
//                            -> 201
//   GET  /__admin/faults     the pending faults (with "remaining")
//   GET  /__admin/exchanges  [{"client_id", "sub", "repository", "ref", "aud", "jti",
//                             "actor_sub", "resource", "error"}] every token exchange since the
//                            last reset (error: "" when it was accepted)
//   POST /__admin/faults/clear, DELETE /__admin/faults   remove them
//   GET  /__admin/config     {"issuer", "settings", "initial_settings", "clients", "routes"}
//   POST /__admin/config     {"rotate_refresh_token": false, ...} (run-time settings only)
//   POST /__admin/revoke-all revokes every grant with its codes and tokens -> {"grants": n}
// Errors: 400 {"error": "bad_request", "error_description": ...}; unknown route: 404.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';

import { readFileSync } from 'node:fs';

import { createRemoteJWKSet, jwtVerify } from 'jose'; // oidc-provider's own JOSE library
import Provider, { errors } from 'oidc-provider';

const providerVersion = JSON.parse(readFileSync(
  new URL('./node_modules/oidc-provider/package.json', import.meta.url),
)).version;

const DEFAULTS = {
  client_id: 'oauth-auth-test',
  access_token_ttl: 3600,
  refresh_token_ttl: 86400,
  id_token_ttl: 3600,
  device_code_ttl: 600,
  rotate_refresh_token: true,
  device_interval: 1,
  resource_scope: 'api:read api:write',
  scopes: [],
  audience_param: false,
  api_client_id: 'api',
  api_client_secret: 'api-secret',
  extra_clients: [],
  client_secret: '',
  tenant_id: '8eaef023-2b34-4da1-9baa-8bc8c9d6a490',
  mode: '',
  machine_client_id: 'machine',
  machine_client_secret: 'machine-secret',
  machine_jwks: null,
  exchange_issuer: '',
  exchange_jwks_uri: '',
  exchange_audience: '',
  tls_cert: '',
  tls_key: '',
};
const MUTABLE = new Set([
  'access_token_ttl', 'refresh_token_ttl', 'id_token_ttl', 'device_code_ttl',
  'rotate_refresh_token', 'device_interval',
  'exchange_issuer', 'exchange_jwks_uri', 'exchange_audience',
]);
const TTLS = ['access_token_ttl', 'refresh_token_ttl', 'id_token_ttl', 'device_code_ttl'];

function parseSettings() {
  const raw = process.argv[2] ?? process.env.OIDC_BENCH_SETTINGS ?? '{}';
  const given = JSON.parse(raw);
  const unknown = Object.keys(given).filter((k) => !(k in DEFAULTS));
  if (unknown.length) throw new Error(`unknown settings: ${unknown.join(', ')}`);
  const settings = { ...DEFAULTS, ...given };
  checkSettings(settings);
  return settings;
}

function checkSettings(settings) {
  for (const name of TTLS) {
    if (!Number.isInteger(settings[name]) || settings[name] <= 0) {
      throw new Error(`${name} must be a positive whole number of seconds`);
    }
  }
  if (typeof settings.rotate_refresh_token !== 'boolean') {
    throw new Error('rotate_refresh_token must be true or false');
  }
  if (settings.device_interval !== null && !(typeof settings.device_interval === 'number'
      && Number.isFinite(settings.device_interval) && settings.device_interval >= 0)) {
    throw new Error('device_interval must be a number of seconds (0.01 plays a hostile provider) or null');
  }
  if (!(settings.mode in MODES)) {
    throw new Error(`mode must be one of ${Object.keys(MODES).map((m) => JSON.stringify(m)).join(', ')}`);
  }
}

// --- modes: cloud providers' documented behaviour, reproduced on oidc-provider ----------------
//
// Each mode cites the documentation it follows. The bench's tests log in through the
// library's preset for that provider and must pass; the generic rules must hit the quirk.
const MODES = {
  '': { docs: [] },
  // Google: "offline_access" is not a Google scope (invalid_scope); a refresh token comes
  // for access_type=offline; installed ("desktop") clients send their client secret at the
  // token endpoint even with PKCE; ID tokens carry iss "accounts.google.com" or
  // "https://accounts.google.com".
  google: {
    docs: [
      'https://developers.google.com/identity/protocols/oauth2/native-app',
      'https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken',
    ],
    rejectScope: 'offline_access',
    accessTypeOffline: true,
    idTokenClaims: () => ({ iss: 'accounts.google.com' }),
  },
  // Microsoft Entra ID v2: the multi-tenant endpoints (/common/v2.0, /organizations/v2.0,
  // /consumers/v2.0) publish issuer ".../{tenantid}/v2.0" and tokens carry the tenant's own
  // issuer and `tid`; the v2 endpoints refuse `resource` (AADSTS901002) and take API scopes.
  // No RFC 9207 `iss` in authorization responses.
  entra: {
    docs: [
      'https://learn.microsoft.com/en-us/entra/identity-platform/access-tokens#validate-the-issuer',
      'https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc',
      'https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes',
      'https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#request-an-authorization-code',
      'https://learn.microsoft.com/en-us/entra/identity/enterprise-apps/configure-user-consent',
    ],
    tenantPaths: ['/common/v2.0', '/organizations/v2.0', '/consumers/v2.0'],
    rejectParam: {
      name: 'resource',
      description: "AADSTS901002: The 'resource' request parameter isn't supported.",
    },
    stripIss: true,
    // Entra issues a refresh token for offline_access without prompt=consent; in a tenant
    // that restricts user consent, prompt=consent shows the "Need admin approval" page (and
    // never comes back to the app) even after an admin consented for every user.
    offlineWithoutConsent: true,
    consentRestricted: true,
    idTokenClaims: () => ({ iss: `${baseUrl}/${settings.tenant_id}/v2.0`, tid: settings.tenant_id }),
  },
  // Auth0: the API is named by `audience` (not `resource`, which it ignores: the token is
  // then an opaque one for /userinfo).
  auth0: {
    docs: ['https://auth0.com/docs/secure/tokens/access-tokens/get-access-tokens'],
    audienceParam: true,
    ignoreParam: 'resource',
  },
  // Amazon Cognito: scopes are openid, email, phone, profile, aws.cognito.signin.user.admin
  // and resource-server scopes (offline_access is invalid_scope); the code grant returns a
  // refresh token anyway; the discovery document names no revocation endpoint, and there
  // is no RFC 8414 document.
  cognito: {
    docs: [
      'https://docs.aws.amazon.com/cognito/latest/developerguide/authorization-endpoint.html',
      'https://docs.aws.amazon.com/cognito/latest/developerguide/token-endpoint.html',
      'https://docs.aws.amazon.com/cognito/latest/developerguide/revocation-endpoint.html',
    ],
    rejectScope: 'offline_access',
    alwaysRefresh: true,
    scopesSupported: ['openid', 'email', 'phone', 'profile'],
    hideMembers: ['revocation_endpoint'],
    noOAuthMetadata: true,
  },
  // GitLab: OIDC scopes openid, profile, email (no offline_access); refresh tokens always.
  gitlab: {
    docs: [
      'https://docs.gitlab.com/integration/openid_connect_provider/',
      'https://docs.gitlab.com/api/oauth2/',
    ],
    rejectScope: 'offline_access',
    alwaysRefresh: true,
    scopesSupported: ['openid', 'profile', 'email', 'api', 'read_user'],
  },
  // GitHub: no discovery document at all; /login/oauth/authorize, /login/oauth/access_token
  // and /login/device/code; OAuth only (no ID token); the client secret in the form; token
  // errors answered with HTTP 200 and an `error` member; GitHub Apps' expiring user tokens
  // come with a refresh token.
  github: {
    docs: [
      'https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps',
      'https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors',
      'https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens',
      'https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps#error-codes-for-the-device-flow',
    ],
    noDiscovery: true,
    noOAuthMetadata: true,
    paths: {
      '/login/oauth/authorize': '/auth',
      '/login/oauth/access_token': '/token',
      '/login/device/code': '/device_authorization',
    },
    errorsWith200: true,
    // GitHub's own error codes for the standard ones ("grant type:error" or "error").
    errorCodes: {
      'authorization_code:invalid_grant': ['bad_verification_code',
        'The code passed is incorrect or expired.'],
      'refresh_token:invalid_grant': ['bad_refresh_token',
        'The refresh token passed is incorrect or expired.'],
      'urn:ietf:params:oauth:grant-type:device_code:invalid_grant': ['incorrect_device_code',
        'The device_code provided is not valid.'],
      invalid_client: ['incorrect_client_credentials',
        'The client_id and/or client_secret passed are incorrect.'],
    },
    alwaysRefresh: true,
    authMethod: 'client_secret_post',
  },
  // Azure AD B2C (as Entra's v1 endpoints): token responses carry `expires_in` (and
  // `not_before`) as strings of digits, e.g. "expires_in": "3600".
  b2c: {
    docs: [
      'https://learn.microsoft.com/en-us/azure/active-directory-b2c/authorization-code-flow#2-get-an-access-token',
      'https://learn.microsoft.com/en-us/previous-versions/azure/active-directory/azuread-dev/v1-protocols-oauth-code',
    ],
    stringExpiresIn: true,
  },
  // ID tokens signed HS256 with the client secret: authentik when the provider has no
  // signing key, Auth0 applications set to HS256. Needs `client_secret` (a confidential
  // client); the JWKS still holds the RSA key, which must never serve as an HMAC secret.
  hs256: {
    docs: [
      'https://docs.goauthentik.io/docs/add-secure-apps/providers/oauth2/',
      'https://auth0.com/docs/get-started/applications/signing-algorithms',
    ],
    idTokenAlg: 'HS256',
  },
  // The attack HS256 invites (RFC 8725 section 2.1): an ID token signed HS256 with the
  // provider's PUBLIC key (as PEM, what a careless verifier would take) as the HMAC secret.
  hs256_forged: {
    docs: ['https://www.rfc-editor.org/rfc/rfc8725#section-2.1'],
    idTokenAlg: 'HS256',
    forgeWithPublicKey: true,
  },
  // An OAuth 2.0 authorization server that publishes only RFC 8414 metadata (as MCP
  // authorization servers do), with a path in its issuer: no openid-configuration, no
  // jwks_uri, no openid scope.
  rfc8414: {
    docs: ['https://www.rfc-editor.org/rfc/rfc8414#section-3.1'],
    issuerPath: '/tenant1',
    noDiscovery: true,
    oauthMetadataInserted: true,
    hideMembers: ['jwks_uri', 'userinfo_endpoint', 'id_token_signing_alg_values_supported'],
    scopesSupported: ['profile', 'email', 'offline_access'],
  },
};

const initialSettings = parseSettings();
let settings = structuredClone(initialSettings);

// Routes, chosen so that no route is a path prefix of another (fault matching is by prefix).
const ROUTES = {
  authorization: '/auth',
  code_verification: '/device',
  device_authorization: '/device_authorization',
  end_session: '/session/end',
  introspection: '/introspect',
  jwks: '/jwks',
  pushed_authorization_request: '/par',
  registration: '/reg',
  revocation: '/revoke',
  token: '/token',
  userinfo: '/me',
  challenge: '/challenge',
  backchannel_authentication: '/backchannel',
  credential: '/credential',
};
const COUNTED = new Map([
  ['/.well-known/openid-configuration', 'discovery'],
  [ROUTES.jwks, 'jwks'],
  [ROUTES.authorization, 'authorization'],
  [ROUTES.device_authorization, 'device_authorization'],
  [ROUTES.revocation, 'revocation'],
  [ROUTES.introspection, 'introspection'],
  [ROUTES.userinfo, 'userinfo'],
  [ROUTES.end_session, 'end_session'],
]);

// --- counts and faults -------------------------------------------------------------------------

let exchanges = [];

function emptyCounts() {
  const counts = { token: {}, faults: {} };
  for (const name of COUNTED.values()) counts[name] = 0;
  return counts;
}
let counts = emptyCounts();
let faults = [];

function countToken(grant, outcome) {
  const byOutcome = (counts.token[grant] ??= {});
  byOutcome[outcome] = (byOutcome[outcome] ?? 0) + 1;
}

function pathMatches(prefix, path) {
  if (path === prefix) return true;
  return path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

function takeFault(ctx) {
  const index = faults.findIndex((f) => pathMatches(f.path, ctx.path)
    && (!f.method || f.method.toUpperCase() === ctx.method));
  if (index === -1) return undefined;
  const fault = faults[index];
  fault.remaining -= 1;
  if (fault.remaining <= 0) faults.splice(index, 1);
  return fault;
}

function checkFault(input) {
  if (!input || typeof input.path !== 'string' || !input.path.startsWith('/')) {
    throw new Error('fault needs a "path" starting with "/"');
  }
  const count = input.count ?? 1;
  if (!Number.isInteger(count) || count < 1) throw new Error('fault "count" must be >= 1');
  if (input.status == null && !input.drop && input.delay_ms == null) {
    throw new Error('fault needs "status", "drop" or "delay_ms"');
  }
  return {
    path: input.path,
    method: input.method ?? null,
    count,
    remaining: count,
    status: input.status ?? null,
    body: input.body ?? null,
    headers: input.headers ?? {},
    delay_ms: input.delay_ms ?? 0,
    drop: Boolean(input.drop),
  };
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// Answers a request from a fault instead of the provider. Returns true when it did.
async function serveFault(ctx, fault) {
  if (fault.delay_ms) await sleep(fault.delay_ms);
  if (fault.status == null && !fault.drop) return false; // a pure delay: serve normally
  counts.faults[fault.path] = (counts.faults[fault.path] ?? 0) + 1;
  let form = null;
  if (ctx.path === ROUTES.token && ctx.method === 'POST') {
    form = new URLSearchParams(await readBody(ctx.req));
    countToken(form.get('grant_type') ?? 'unknown', 'fault');
  }
  // "{form:NAME}" in a fault's body is the value the client posted (a provider that echoes
  // what it was sent, e.g. the refresh token or the code, in its error_description).
  const echo = (text) => (form === null ? text
    : text.replace(/\{form:([A-Za-z_]+)\}/g, (_, name) => form.get(name) ?? ''));
  if (fault.drop) {
    ctx.respond = false;
    ctx.req.socket.destroy();
    return true;
  }
  ctx.status = fault.status;
  for (const [name, value] of Object.entries(fault.headers)) ctx.set(name, String(value));
  if (fault.body == null) {
    ctx.body = '';
  } else if (typeof fault.body === 'string') {
    ctx.type = ctx.response.get('Content-Type') || 'text/plain';
    ctx.body = echo(fault.body);
  } else {
    ctx.body = JSON.parse(echo(JSON.stringify(fault.body))); // JSON
  }
  ctx.set('Cache-Control', 'no-store');
  return true;
}

// --- admin endpoint ----------------------------------------------------------------------------

function publicConfig() {
  return {
    issuer: provider.issuer,
    settings,
    initial_settings: initialSettings,
    clients: clients.map((c) => c.client_id),
    routes: ROUTES,
  };
}

async function revokeAll() {
  const ids = [...grantIds];
  grantIds.clear();
  for (const id of ids) {
    for (const model of ['AccessToken', 'RefreshToken', 'AuthorizationCode', 'DeviceCode']) {
      await provider[model].revokeByGrantId(id);
    }
    const grant = await provider.Grant.find(id);
    if (grant) await grant.destroy();
  }
  return ids.length;
}

async function admin(ctx) {
  const sub = ctx.path.slice('/__admin'.length) || '/';
  const route = `${ctx.method} ${sub}`;
  let input = {};
  if (ctx.method === 'POST' || ctx.method === 'PUT') {
    const text = await readBody(ctx.req);
    input = text ? JSON.parse(text) : {};
  }
  ctx.set('Cache-Control', 'no-store');
  switch (route) {
    case 'GET /counts':
      ctx.body = counts;
      return;
    case 'POST /reset':
      counts = emptyCounts();
      exchanges = [];
      ctx.body = { ok: true };
      return;
    case 'POST /reset-all':
      counts = emptyCounts();
      exchanges = [];
      faults = [];
      settings = structuredClone(initialSettings);
      ctx.body = { ok: true };
      return;
    case 'POST /fault':
    case 'POST /faults': {
      const fault = checkFault(input);
      faults.push(fault);
      ctx.status = 201;
      ctx.body = { ok: true, fault };
      return;
    }
    case 'GET /faults':
      ctx.body = faults;
      return;
    case 'GET /exchanges':
      ctx.body = exchanges;
      return;
    case 'DELETE /faults':
    case 'POST /faults/clear':
    case 'DELETE /faults/clear':
      faults = [];
      ctx.body = { ok: true };
      return;
    case 'GET /config':
      ctx.body = publicConfig();
      return;
    case 'POST /config': {
      const unknown = Object.keys(input).filter((k) => !MUTABLE.has(k));
      if (unknown.length) throw new Error(`not changeable at run time: ${unknown.join(', ')}`);
      const next = { ...settings, ...input };
      checkSettings(next);
      settings = next;
      ctx.body = publicConfig();
      return;
    }
    case 'POST /revoke-all':
      ctx.body = { ok: true, grants: await revokeAll() };
      return;
    default:
      ctx.status = 404;
      ctx.body = { error: 'not_found', routes: [
        'GET /counts', 'POST /reset', 'POST /reset-all', 'POST /fault', 'GET /faults',
        'GET /exchanges',
        'POST /faults/clear', 'DELETE /faults', 'GET /config', 'POST /config', 'POST /revoke-all',
      ] };
  }
}

// --- the provider ------------------------------------------------------------------------------

// Not generateKeyPairSync: on Node 20 it can deadlock for good. A garbage collection while it
// builds its result runs the job's own destructor, which waits for a mutex the job still holds
// (main thread in node::crypto::KeyGenJob<RsaKeyGenTraits>::~KeyGenJob under
// Heap::CollectGarbage, seen by gdb: about one start in forty hung with no output under load).
// The callback form finishes on the thread pool and hands the key over outside that lock.
async function rsaKey() {
  const privateKey = await new Promise((resolve, reject) => {
    crypto.generateKeyPair('rsa', { modulusLength: 2048 }, (error, _publicKey, key) => {
      if (error) reject(error); else resolve(key);
    });
  });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };
}

const signingKey = await rsaKey();
// With tls_cert and tls_key (PEM), HTTPS: a provider whose CA the client must be told of.
const tls = Boolean(initialSettings.tls_cert && initialSettings.tls_key);
const server = tls
  ? https.createServer({ cert: initialSettings.tls_cert, key: initialSettings.tls_key })
  : http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const baseUrl = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
const MODE = MODES[initialSettings.mode];
const issuer = `${baseUrl}${MODE.issuerPath ?? ''}`;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

const clients = [
  {
    client_id: settings.client_id,
    client_name: 'oauth-auth test client',
    application_type: 'native',
    ...(settings.client_secret
      ? { client_secret: settings.client_secret,
        token_endpoint_auth_method: MODE.authMethod ?? 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' }),
    ...(MODE.idTokenAlg ? { id_token_signed_response_alg: MODE.idTokenAlg } : {}),
    redirect_uris: ['http://127.0.0.1/callback', 'http://localhost/callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/logout', 'http://localhost/logout'],
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
  },
  {
    client_id: settings.api_client_id,
    client_secret: settings.api_client_secret,
    client_name: 'bench resource server (introspection)',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  },
  {
    client_id: settings.machine_client_id,
    client_secret: settings.machine_client_secret,
    client_name: 'a machine (client credentials, token exchange)',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials', TOKEN_EXCHANGE],
    response_types: [],
    redirect_uris: [],
  },
  ...(settings.machine_jwks ? [{
    client_id: 'machine-jwt',
    client_name: 'a machine with a key (private_key_jwt)',
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: settings.machine_jwks,
    grant_types: ['client_credentials', TOKEN_EXCHANGE],
    response_types: [],
    redirect_uris: [],
  }] : []),
  ...settings.extra_clients,
];

const account = (sub) => ({
  accountId: sub,
  async claims() {
    return {
      sub,
      email: sub.includes('@') ? sub : `${sub}@example.test`,
      email_verified: true,
      name: sub,
      preferred_username: sub,
    };
  },
});

function resourceServerInfo() {
  return {
    scope: settings.resource_scope,
    accessTokenFormat: 'jwt',
    accessTokenTTL: settings.access_token_ttl,
    jwt: { sign: { alg: 'RS256' } },
  };
}

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  routes: ROUTES,
  scopes: ['openid', 'offline_access', 'profile', 'email', ...settings.scopes],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // The ID token carries the scopes' claims (email) even when an access token is issued too.
  conformIdTokenClaims: false,
  findAccount: (ctx, sub) => account(sub),
  pkce: { required: () => true },
  ...(MODE.idTokenAlg ? { enabledJWA: {
    idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', MODE.idTokenAlg] } } : {}),
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    // RFC 7591 dynamic registration without an initial access token, as the MCP
    // authorization spec's servers offer it (resource_auth registers itself here).
    registration: { enabled: true },
    revocation: { enabled: true },
    // The public client may introspect its own tokens; the "api" client any token.
    introspection: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // One resource from the authorization request is the default of later token requests.
      defaultResource: (ctx, client, oneOf) => oneOf,
      // A refresh (or code exchange) without `resource` keeps the granted one: JWT again.
      useGrantedResource: () => true,
      getResourceServerInfo: () => resourceServerInfo(),
    },
    clientCredentials: { enabled: true },
  },
  issueRefreshToken: (ctx, client, source) => client.grantTypeAllowed('refresh_token')
    && (MODE.alwaysRefresh || source.scopes.has('offline_access')),
  rotateRefreshToken: () => settings.rotate_refresh_token,
  extraTokenClaims: (ctx, token) => exchangeClaims.get(token),
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? settings.access_token_ttl,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL
      ?? settings.access_token_ttl,
    RefreshToken: () => settings.refresh_token_ttl,
    IdToken: () => settings.id_token_ttl,
    DeviceCode: () => settings.device_code_ttl,
    AuthorizationCode: () => 60,
    Interaction: () => 3600,
    Session: () => 86400,
    Grant: () => 86400 * 14,
  },
});

// --- RFC 8693 token exchange ------------------------------------------------------------------

const remoteKeySets = new Map();
// The claims an exchanged token carries (the provider's extraTokenClaims hook reads them).
const exchangeClaims = new WeakMap();

function subjectKeySet() {
  const uri = settings.exchange_jwks_uri;
  if (!remoteKeySets.has(uri)) remoteKeySets.set(uri, createRemoteJWKSet(new URL(uri)));
  return remoteKeySets.get(uri);
}

// Verify a subject (or actor) token against the trusted issuer; throws invalid_grant.
async function verifySubject(token, what, record) {
  try {
    const { payload } = await jwtVerify(token, subjectKeySet(), {
      issuer: settings.exchange_issuer,
      audience: settings.exchange_audience || undefined,
      algorithms: ['RS256'],
    });
    return payload;
  } catch (err) {
    record.error = err.code ?? 'invalid';
    exchanges.push(record);
    if (err.code === 'ERR_JWT_EXPIRED') throw new errors.InvalidGrant(`${what} has expired`);
    throw new errors.InvalidGrant(`${what} is not valid (${err.code ?? err.message})`);
  }
}

async function tokenExchange(ctx) {
  const { client, params } = ctx.oidc;
  const record = { client_id: client.clientId, sub: null, repository: null, ref: null,
    aud: null, jti: null, actor_sub: null, resource: params.resource ?? params.audience ?? null,
    error: '' };
  if (!settings.exchange_issuer || !settings.exchange_jwks_uri) {
    throw new errors.InvalidRequest('this provider trusts no subject token issuer');
  }
  if (params.subject_token_type !== JWT_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`subject_token_type must be ${JWT_TOKEN_TYPE}`);
  }
  const subject = await verifySubject(params.subject_token, 'subject_token', record);
  let actor = null;
  if (params.actor_token) {
    if (params.actor_token_type !== JWT_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`actor_token_type must be ${JWT_TOKEN_TYPE}`);
    }
    actor = await verifySubject(params.actor_token, 'actor_token', record);
  }
  Object.assign(record, {
    sub: subject.sub ?? null,
    repository: subject.repository ?? null,
    ref: subject.ref ?? null,
    aud: subject.aud ?? null,
    jti: subject.jti ?? null,
    actor_sub: actor?.sub ?? null,
  });
  exchanges.push(record);

  const token = new provider.ClientCredentials({ client, scope: params.scope || undefined });
  const resource = params.resource ?? params.audience;
  if (resource) token.resourceServer = new provider.ResourceServer(resource, resourceServerInfo());
  // oidc-provider's ClientCredentials tokens have no account, so the JWT's `sub` is the
  // client; the subject travels as `subject` (with `act`, RFC 8693 section 4.1), through
  // the extraTokenClaims hook.
  exchangeClaims.set(token, {
    subject: subject.sub,
    ...(subject.repository ? { repository: subject.repository } : {}),
    ...(subject.ref ? { ref: subject.ref } : {}),
    ...(actor ? { act: { sub: actor.sub } } : { act: { sub: client.clientId } }),
  });
  ctx.oidc.entity('ClientCredentials', token);
  const value = await token.save();
  ctx.body = {
    access_token: value,
    issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    token_type: 'Bearer',
    expires_in: token.expiration,
    ...(token.scope ? { scope: token.scope } : {}),
  };
}

provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'audience',
  'resource', 'scope', 'requested_token_type',
]);

const grantIds = new Set();
for (const event of ['access_token.saved', 'refresh_token.saved', 'authorization_code.saved', 'grant.saved']) {
  provider.on(event, (entity) => {
    const id = event === 'grant.saved' ? entity.jti : entity.grantId;
    if (id) grantIds.add(id);
  });
}

// --- the modes' request and response rewriting ----------------------------------------------

function redirectError(ctx, query, error, description) {
  // The authorization endpoint's error answer, at the (loopback) redirect URI.
  const target = new URL(query.get('redirect_uri'));
  target.searchParams.set('error', error);
  target.searchParams.set('error_description', description);
  if (query.has('state')) target.searchParams.set('state', query.get('state'));
  if (!MODE.stripIss) target.searchParams.set('iss', issuer); // RFC 9207, as oidc-provider
  ctx.status = 303;
  ctx.redirect(target.toString());
}

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

// Re-sign an ID token with claims changed (the provider's own key and kid).
function resignIdToken(token, changes) {
  const [header, payload] = token.split('.');
  const claims = { ...JSON.parse(Buffer.from(payload, 'base64url')), ...changes };
  const input = `${header}.${b64url(JSON.stringify(claims))}`;
  const key = crypto.createPrivateKey({ key: signingKey, format: 'jwk' });
  return `${input}.${b64url(crypto.sign('sha256', Buffer.from(input), key))}`;
}

// Re-sign an ID token HS256 with the provider's public key (PEM) as the secret (a forgery).
function forgeHs256(token) {
  const payload = token.split('.')[1];
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const publicPem = crypto.createPublicKey({ key: signingKey, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' });
  const input = `${header}.${payload}`;
  return `${input}.${crypto.createHmac('sha256', publicPem).update(input).digest('base64url')}`;
}

const OIDC_DISCOVERY = '/.well-known/openid-configuration';
const OAUTH_METADATA = '/.well-known/oauth-authorization-server';
let discoveryTemplate = false;

// Returns true when the request was answered here.
async function modeBefore(ctx) {
  const mapped = MODE.paths?.[ctx.path];
  if (mapped) ctx.path = mapped;
  if (MODE.noDiscovery && ctx.path.startsWith('/.well-known/openid-configuration')) {
    ctx.status = 404;
    ctx.body = { error: 'not_found' };
    return true;
  }
  if (MODE.noOAuthMetadata && ctx.path.startsWith(OAUTH_METADATA)) {
    ctx.status = 404;
    ctx.body = { error: 'not_found' };
    return true;
  }
  if (MODE.oauthMetadataInserted) {
    if (ctx.path === OAUTH_METADATA) { // only the path-inserted name exists
      ctx.status = 404;
      ctx.body = { error: 'not_found' };
      return true;
    }
    if (ctx.path === `${OAUTH_METADATA}${MODE.issuerPath}`) ctx.path = OAUTH_METADATA;
  }
  discoveryTemplate = false;
  if (MODE.tenantPaths) {
    const tenant = MODE.tenantPaths.find((p) => ctx.path === `${p}${OIDC_DISCOVERY}`);
    if (tenant) {
      ctx.path = OIDC_DISCOVERY;
      discoveryTemplate = true;
    }
  }
  if (ctx.method === 'GET' && ctx.path === ROUTES.authorization) {
    const query = new URLSearchParams(ctx.querystring);
    const scopes = (query.get('scope') ?? '').split(' ').filter(Boolean);
    if (MODE.rejectScope && scopes.includes(MODE.rejectScope) && query.get('redirect_uri')) {
      redirectError(ctx, query, 'invalid_scope',
        `Some requested scopes were invalid: ${MODE.rejectScope}`);
      return true;
    }
    if (MODE.rejectParam && query.has(MODE.rejectParam.name) && query.get('redirect_uri')) {
      redirectError(ctx, query, 'invalid_request', MODE.rejectParam.description);
      return true;
    }
    if (MODE.ignoreParam) query.delete(MODE.ignoreParam);
    if (MODE.consentRestricted && (query.get('prompt') ?? '').split(' ').includes('consent')) {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = '<!DOCTYPE html><html><head><title>Need admin approval</title></head><body>'
        + '<h1>Need admin approval</h1><p>This app needs permission to access resources in'
        + ' your organization that only an admin can grant.</p></body></html>';
      counts.authorization += 1;
      return true;
    }
    if (MODE.offlineWithoutConsent && scopes.includes('offline_access') && !query.has('prompt')) {
      query.set('prompt', 'consent'); // what oidc-provider needs to grant it
    }
    if (MODE.accessTypeOffline && query.get('access_type') === 'offline') {
      // oidc-provider grants offline_access only with prompt=consent (OIDC Core 11);
      // Google asks for consent itself the first time.
      query.delete('access_type');
      query.set('scope', [...scopes, 'offline_access'].join(' '));
      if (!query.has('prompt')) query.set('prompt', 'consent');
    }
    ctx.querystring = query.toString();
  }
  const isForm = ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded');
  if (isForm && (ctx.path === ROUTES.token || ctx.path === ROUTES.device_authorization)
      && (MODE.rejectParam || MODE.ignoreParam || MODE.audienceParam)) {
    // Read the form here; oidc-provider then parses `ctx.req.body` (its documented fallback).
    const form = new URLSearchParams(await readBody(ctx.req));
    if (MODE.rejectParam && form.has(MODE.rejectParam.name)) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_request', error_description: MODE.rejectParam.description };
      if (ctx.path === ROUTES.token) countToken(form.get('grant_type') ?? 'unknown', 'invalid_request');
      return true;
    }
    if (MODE.ignoreParam) form.delete(MODE.ignoreParam);
    if (MODE.audienceParam && ctx.path === ROUTES.device_authorization && form.has('audience')) {
      form.set('resource', form.get('audience'));
    }
    if (MODE.audienceParam) form.delete('audience');
    ctx.req.body = form.toString();
  }
  return false;
}

function modeAfter(ctx) {
  const body = ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body)
    ? ctx.body : null;
  if (body && (ctx.path === OIDC_DISCOVERY || ctx.path === OAUTH_METADATA)
      && ctx.method === 'GET') {
    const doc = { ...body };
    for (const name of MODE.hideMembers ?? []) delete doc[name];
    if (MODE.scopesSupported) doc.scopes_supported = MODE.scopesSupported;
    if (MODE.stripIss) delete doc.authorization_response_iss_parameter_supported;
    if (discoveryTemplate) doc.issuer = `${baseUrl}/{tenantid}/v2.0`;
    ctx.body = doc;
  }
  if (ctx.path === ROUTES.token && body) {
    if (MODE.stringExpiresIn && typeof body.expires_in === 'number') {
      const notBefore = Math.floor(Date.now() / 1000);
      ctx.body = { ...ctx.body, expires_in: String(body.expires_in), not_before: String(notBefore) };
    }
    if (MODE.forgeWithPublicKey && typeof body.id_token === 'string') {
      ctx.body = { ...ctx.body, id_token: forgeHs256(body.id_token) };
    }
    if (MODE.idTokenClaims && typeof body.id_token === 'string') {
      ctx.body = { ...ctx.body, id_token: resignIdToken(body.id_token, MODE.idTokenClaims()) };
    }
    const grant = ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type ?? '';
    const renamed = MODE.errorCodes?.[`${grant}:${body.error}`] ?? MODE.errorCodes?.[body.error];
    if (renamed && ctx.status >= 400) {
      ctx.body = { ...ctx.body, error: renamed[0], error_description: renamed[1] };
    }
    if (MODE.errorsWith200 && ctx.status >= 400 && body.error) ctx.status = 200;
  }
  if (MODE.stripIss && ctx.status >= 300 && ctx.status < 400) {
    const location = ctx.response.get('Location');
    if (location && location.includes('iss=')) {
      const target = new URL(location);
      target.searchParams.delete('iss');
      ctx.set('Location', target.toString());
    }
  }
}

const FONT_IMPORT = /@import url\(https:\/\/fonts\.googleapis\.com[^)]*\);?/g;

provider.use(async (ctx, next) => {
  if (pathMatches('/__admin', ctx.path)) {
    try {
      await admin(ctx);
    } catch (err) {
      ctx.status = 400;
      ctx.body = { error: 'bad_request', error_description: String(err.message ?? err) };
    }
    return;
  }

  const fault = takeFault(ctx);
  if (fault && await serveFault(ctx, fault)) return;

  if (await modeBefore(ctx)) return;

  if ((initialSettings.audience_param || MODE.audienceParam)
      && ctx.method === 'GET' && ctx.path === ROUTES.authorization) {
    const query = new URLSearchParams(ctx.querystring);
    if (query.has('audience') && !query.has('resource')) {
      query.set('resource', query.get('audience'));
      query.delete('audience');
      ctx.querystring = query.toString();
    }
  }

  await next();

  modeAfter(ctx);

  const name = COUNTED.get(ctx.path);
  if (name) counts[name] += 1;
  if (ctx.path === ROUTES.token) {
    const grant = ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type ?? 'unknown';
    // An error answered with HTTP 200 (the "github" mode) is counted as that error.
    const error = typeof ctx.body?.error === 'string' ? ctx.body.error : undefined;
    const outcome = error ?? (ctx.status === 200 ? 'ok' : `http_${ctx.status}`);
    countToken(grant, outcome);
  }
  if (ctx.path === ROUTES.device_authorization && ctx.status === 200
      && settings.device_interval !== null && ctx.body && typeof ctx.body === 'object') {
    ctx.body = { ...ctx.body, interval: settings.device_interval };
  }
  // The development pages import a web font from the internet: there is no internet here.
  if (typeof ctx.body === 'string' && ctx.body.includes('fonts.googleapis.com')) {
    ctx.body = ctx.body.replace(FONT_IMPORT, '');
  }
});

server.on('request', provider.callback());

let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeAllConnections();
  process.exit(code);
}
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
process.stdin.on('end', () => stop(0));
process.stdin.on('close', () => stop(0));
process.stdin.on('error', () => stop(0));
process.stdin.resume();

process.stdout.write(`${JSON.stringify({
  ready: true,
  issuer,
  admin: `${baseUrl}/__admin`,
  pid: process.pid,
  client_id: settings.client_id,
  mode: settings.mode,
  mode_docs: MODE.docs,
  base_url: baseUrl,
  api_client_id: settings.api_client_id,
  api_client_secret: settings.api_client_secret,
  machine_client_id: settings.machine_client_id,
  machine_client_secret: settings.machine_client_secret,
  oidc_provider: providerVersion,
})}\n`);
