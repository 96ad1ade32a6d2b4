// OpenID Connect providers for StreamSpace's tests (started by the testkit's `oidc` module).
//
//   node op.mjs real  PORT CONFIG.json   a real, certified provider (npm oidc-provider) with its
//                                        own login page (any login, any password)
//   node op.mjs rogue PORT               a tiny provider whose ID tokens are wrong on purpose
//
// CONFIG.json: { "clients": [{ "client_id", "client_secret", "redirect_uris": [...] }],
//                "accounts": "PATH" }. The accounts file ({ "<login>": { "groups": [...],
// "email": ..., "preferred_username": ..., "name": ... } }) is read at every sign-in, so a test
// can change someone's groups between two sign-ins; a login not in it signs in with no groups.
//
// The rogue provider serves one issuer per flaw, `http://127.0.0.1:PORT/<flaw>`, with discovery,
// JWKS, an authorization endpoint that answers at once (no login page) and a token endpoint.
// Flaws: `good` (nothing wrong: proves the endpoint itself works), `nonce` (another nonce),
// `otherkey` (signed by a key its JWKS does not publish, under the published key's id),
// `audience` (issued to another client), `expired` (expired ten minutes ago), `issuer` (names
// another issuer), `unsigned` (`alg: none`).

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";

const [mode, portArg, configPath] = process.argv.slice(2);
const port = Number(portArg);
if (!port) {
  console.error("usage: node op.mjs real|rogue PORT [CONFIG.json]");
  process.exit(2);
}

if (mode === "real") {
  const { default: Provider } = await import("oidc-provider");
  const config = JSON.parse(readFileSync(configPath, "utf8"));
  const issuer = `http://127.0.0.1:${port}`;
  const accounts = () => {
    try {
      return JSON.parse(readFileSync(config.accounts, "utf8"));
    } catch {
      return {};
    }
  };
  const provider = new Provider(issuer, {
    clients: config.clients.map((c) => ({
      ...c,
      grant_types: ["authorization_code"],
      response_types: ["code"],
    })),
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => {
        const a = accounts()[sub] ?? {};
        return {
          sub,
          email: a.email ?? `${sub}@example.test`,
          preferred_username: a.preferred_username ?? sub,
          name: a.name ?? sub,
          groups: a.groups ?? [],
        };
      },
    }),
    claims: {
      openid: ["sub"],
      email: ["email"],
      profile: ["preferred_username", "name"],
      groups: ["groups"],
    },
    scopes: ["openid", "email", "profile", "groups"],
    // The claims go into the ID token, as most providers put them there.
    conformIdTokenClaims: false,
    // No consent page: the tests are about signing in, not about consent.
    loadExistingGrant: async (ctx) => {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope("openid email profile groups");
      await grant.save();
      return grant;
    },
    pkce: { required: () => true },
  });
  provider.listen(port, "127.0.0.1", () => console.log(`issuer ${issuer}`));
} else if (mode === "rogue") {
  const jose = await import("jose");
  const published = await jose.generateKeyPair("RS256", { extractable: true });
  const other = await jose.generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await jose.exportJWK(published.publicKey)), kid: "k1", use: "sig", alg: "RS256" };
  const codes = new Map();
  const flaws = new Set(["good", "nonce", "otherkey", "audience", "expired", "issuer", "unsigned"]);
  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(body === undefined ? "" : JSON.stringify(body));
  };
  const readBody = (req) =>
    new Promise((resolve) => {
      let data = "";
      req.on("data", (chunk) => (data += chunk));
      req.on("end", () => resolve(new URLSearchParams(data)));
    });
  createServer(async (req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    const [, flaw, ...rest] = url.pathname.split("/");
    const path = rest.join("/");
    if (!flaws.has(flaw)) return send(res, 404, { error: "no such issuer" });
    const issuer = `http://127.0.0.1:${port}/${flaw}`;
    if (path === ".well-known/openid-configuration") {
      return send(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/auth`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ["code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
      });
    }
    if (path === "jwks") return send(res, 200, { keys: [jwk] });
    if (path === "auth") {
      const code = randomBytes(16).toString("hex");
      codes.set(code, {
        nonce: url.searchParams.get("nonce"),
        clientId: url.searchParams.get("client_id"),
      });
      const back = new URL(url.searchParams.get("redirect_uri"));
      back.searchParams.set("code", code);
      back.searchParams.set("state", url.searchParams.get("state"));
      return send(res, 302, undefined, { location: back.toString() });
    }
    if (path === "token" && req.method === "POST") {
      const form = await readBody(req);
      const grant = codes.get(form.get("code"));
      codes.delete(form.get("code"));
      if (!grant) return send(res, 400, { error: "invalid_grant" });
      const now = Math.floor(Date.now() / 1000);
      const claims = {
        iss: flaw === "issuer" ? "http://127.0.0.1:1/elsewhere" : issuer,
        sub: `rogue-${flaw}`,
        aud: flaw === "audience" ? "someone-else" : grant.clientId,
        iat: flaw === "expired" ? now - 1200 : now,
        exp: flaw === "expired" ? now - 600 : now + 300,
        nonce: flaw === "nonce" ? "not-the-nonce-you-sent" : grant.nonce,
        preferred_username: `rogue-${flaw}`,
        email: `rogue-${flaw}@example.test`,
      };
      const key = flaw === "otherkey" ? other.privateKey : published.privateKey;
      const idToken =
        flaw === "unsigned"
          ? new jose.UnsecuredJWT(claims).encode()
          : await new jose.SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: "k1" }).sign(key);
      return send(res, 200, {
        access_token: randomBytes(16).toString("hex"),
        token_type: "Bearer",
        expires_in: 300,
        id_token: idToken,
      });
    }
    return send(res, 404, { error: "not found" });
  }).listen(port, "127.0.0.1", () => console.log(`rogue issuers under http://127.0.0.1:${port}/`));
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
