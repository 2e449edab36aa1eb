// A real OpenID provider for the identity tests: the certified `oidc-provider` package from
// the npm registry, on a loopback port, with the accounts and clients the test passes in.
// Discovery, the authorization endpoint with PKCE, the token endpoint and the signed ID
// tokens are the package's own code. Its login and consent pages are its development
// interactions, which the tests fill in as a person would.
//
// One addition stands in for a compromised or broken provider: `GET /__tamper?mode=M`
// makes the token endpoint alter the next ID tokens it hands out — a broken signature, or
// a properly signed token with the wrong audience, issuer, nonce or expiry, or no
// signature at all — so the tests can show the server refuses each. `mode=` turns it off.
// `GET /__groups?sub=S&groups=A,B` changes an account's groups, as the directory would.
//
// node provider.mjs PORT CONFIG_JSON
//   CONFIG_JSON: {"clients": [{client_id, client_secret, redirect_uris}],
//                 "accounts": {"<sub>": {claims…}}}
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair } from 'jose';

const [port, configJson] = process.argv.slice(2);
const config = JSON.parse(configJson);
const issuer = `http://127.0.0.1:${port}`;

// A signing key of this run's own (not the package's published development keys).
const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  jwks: { keys: [signingKey] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  // The claims of the granted scopes go into the ID token too (not only the userinfo
  // endpoint), as Entra ID, Okta and Keycloak do.
  conformIdTokenClaims: false,
  findAccount: async (ctx, sub) => {
    const claims = config.accounts[sub];
    if (!claims) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...claims }) };
  },
  pkce: { required: () => true },
  cookies: { keys: ['switchboard-test-provider'] },
  ttl: {
    AuthorizationCode: 60, Interaction: 300, Session: 300, Grant: 300, IdToken: 300, AccessToken: 300,
  },
});

let tamper = '';
const now = () => Math.floor(Date.now() / 1000);
const resign = (claims) => new SignJWT(claims)
  .setProtectedHeader({ alg: 'RS256', kid: 'test-key' })
  .sign(privateKey);

async function tampered(idToken) {
  const [header, payload, signature] = idToken.split('.');
  const claims = decodeJwt(idToken);
  switch (tamper) {
    case 'signature': {
      const flipped = signature[0] === 'A' ? 'B' : 'A';
      return `${header}.${payload}.${flipped}${signature.slice(1)}`;
    }
    case 'payload': {
      const changed = Buffer.from(JSON.stringify({ ...claims, sub: 'mallory' })).toString('base64url');
      return `${header}.${changed}.${signature}`;
    }
    case 'unsigned': {
      const none = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
      return `${none}.${payload}.`;
    }
    case 'audience': return resign({ ...claims, aud: 'someone-else' });
    case 'issuer': return resign({ ...claims, iss: 'http://127.0.0.1:1' });
    case 'nonce': return resign({ ...claims, nonce: 'a-nonce-from-another-sign-in' });
    case 'expired': return resign({ ...claims, iat: now() - 900, exp: now() - 600 });
    default: return idToken;
  }
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/__tamper') {
    tamper = ctx.query.mode || '';
    ctx.body = { tamper };
    return;
  }
  // The directory changed: `GET /__groups?sub=S&groups=A,B` (empty: none).
  if (ctx.path === '/__groups') {
    const account = config.accounts[ctx.query.sub];
    account.groups = ctx.query.groups ? ctx.query.groups.split(',') : [];
    ctx.body = account;
    return;
  }
  await next();
  if (ctx.path === '/token' && tamper && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await tampered(ctx.body.id_token) };
  }
});

createServer(provider.callback()).listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
