/**
 * Access token verification through a real function handler: HS256 with the
 * local JWT secret, ES256 and RS256 through a JWKS served on 127.0.0.1, and
 * every refusal as a 401 problem document with CORS headers.
 */
import assert from "node:assert/strict";
import {
  exportJWK,
  generateKeyPair,
  type JWK,
  SignJWT,
  UnsecuredJWT,
} from "jose";
import { createAuthenticator } from "../../shared/auth/mod.ts";
import { LOCAL_JWT_SECRET } from "../../shared/env.ts";
import { createFunction } from "../../shared/handlers/mod.ts";
import { silentLogger } from "../../shared/http/log.ts";
import {
  deviceRequest,
  type Harness,
  ISSUER,
  randomKek,
  readProblem,
  signUserToken,
  startHarness,
  type TestUser,
} from "../functions/harness.ts";

interface SigningKey {
  kid: string;
  alg: "ES256" | "RS256";
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(alg: "ES256" | "RS256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, {
    extractable: true,
  });
  const kid = crypto.randomUUID();
  const jwk = { ...await exportJWK(publicKey), kid, alg, use: "sig" };
  return { kid, alg, privateKey, jwk };
}

/** Serves `{keys}` as a JWKS on a free loopback port, as Supabase Auth does. */
function serveJwks(keys: JWK[]) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => Response.json({ keys }),
  );
  const { port } = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${port}/auth/v1/.well-known/jwks.json`,
    close: () => server.shutdown(),
  };
}

async function asymmetricToken(
  key: SigningKey,
  userId: string,
  claims: { audience?: string; issuer?: string } = {},
): Promise<string> {
  return await new SignJWT({ role: "authenticated" })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
    .setSubject(userId)
    .setAudience(claims.audience ?? "authenticated")
    .setIssuer(claims.issuer ?? ISSUER)
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(key.privateKey);
}

/** Builds a status request for an unknown project, which is 404 once the token is accepted. */
function statusRequest(token: string | null): Request {
  const headers = new Headers({ origin: "https://app.example" });
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  return new Request(
    `http://127.0.0.1:54321/functions/v1/nebula-status/${crypto.randomUUID()}?projectId=${crypto.randomUUID()}`,
    { headers },
  );
}

async function withJwksHarness(
  run: (context: {
    harness: Harness;
    user: TestUser;
    keys: SigningKey[];
    handle: (request: Request) => Promise<Response>;
  }) => Promise<void>,
) {
  const keys = [await signingKey("ES256"), await signingKey("RS256")];
  const jwks = serveJwks(keys.map((key) => key.jwk));
  await using harness = await startHarness();
  try {
    const user = await harness.createUser("jwks");
    const handle = createFunction("nebula-status", {
      ...harness.deps,
      auth: createAuthenticator(harness.db, {
        jwtSecret: LOCAL_JWT_SECRET,
        jwksUrl: jwks.url,
        issuer: ISSUER,
      }),
      kek: randomKek(),
      logger: silentLogger,
    });
    await run({ harness, user, keys, handle });
  } finally {
    await jwks.close();
  }
}

async function assertUnauthorized(
  response: Response,
  code = "invalid_token",
): Promise<string> {
  assert.equal(response.status, 401);
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
  assert.match(
    response.headers.get("access-control-allow-headers") ?? "",
    /authorization/,
  );
  const problem = await readProblem(response);
  assert.equal(problem.status, 401);
  assert.equal(problem.code, code);
  return problem.detail;
}

Deno.test("HS256 token with JWT secret is accepted", async () => {
  await using harness = await startHarness();
  const user = await harness.createUser();

  const response = await harness.call(
    "nebula-status",
    "GET",
    `/${crypto.randomUUID()}?projectId=${crypto.randomUUID()}`,
    { token: user.token },
  );

  assert.equal(response.status, 404);
  assert.equal((await readProblem(response)).code, "project_not_found");
});

Deno.test("ES256 and RS256 tokens verify through JWKS", async () => {
  await withJwksHarness(async ({ user, keys, handle }) => {
    for (const key of keys) {
      const token = await asymmetricToken(key, user.id);

      const response = await handle(statusRequest(token));

      assert.equal(response.status, 404, `${key.alg} token was not accepted`);
      assert.equal((await readProblem(response)).code, "project_not_found");
    }
    const hs256 = await handle(statusRequest(await signUserToken(user.id)));
    assert.equal(hs256.status, 404, "HS256 must still verify beside a JWKS");
    await hs256.body?.cancel();
  });
});

Deno.test("access token from a key missing in the JWKS is 401", async () => {
  await withJwksHarness(async ({ user, handle }) => {
    const stranger = await signingKey("ES256");
    const token = await asymmetricToken(stranger, user.id);

    await assertUnauthorized(await handle(statusRequest(token)));
  });
});

Deno.test("asymmetric token without a configured JWKS is 401", async () => {
  await using harness = await startHarness();
  const user = await harness.createUser();
  const token = await asymmetricToken(await signingKey("ES256"), user.id);

  const response = await harness.deps.auth.authenticate(
    statusRequest(token),
  ).catch((error) => error);

  assert.equal(response.status, 401);
  assert.equal(response.code, "invalid_token");
});

Deno.test("access token refusals are 401 problems with CORS", async (t) => {
  await using harness = await startHarness();
  const user = await harness.createUser();
  const now = Math.floor(Date.now() / 1000);
  const cases: { name: string; token: () => Promise<string> }[] = [
    {
      name: "alg none",
      token: () =>
        Promise.resolve(
          new UnsecuredJWT({ role: "authenticated" })
            .setSubject(user.id)
            .setAudience("authenticated")
            .setIssuer(ISSUER)
            .setExpirationTime("1h")
            .encode(),
        ),
    },
    {
      name: "expired",
      token: () => signUserToken(user.id, { expiresAt: now - 60 }),
    },
    {
      name: "wrong audience",
      token: () => signUserToken(user.id, { audience: "service" }),
    },
    {
      name: "wrong issuer",
      token: () =>
        signUserToken(user.id, { issuer: "https://other.supabase.co/auth/v1" }),
    },
    {
      name: "wrong secret",
      token: () =>
        signUserToken(user.id, { secret: "x".repeat(40) + "another-secret" }),
    },
    {
      name: "anon role",
      token: () => signUserToken(user.id, { role: "anon" }),
    },
    {
      name: "unknown user",
      token: () => signUserToken(crypto.randomUUID()),
    },
    {
      name: "HS256 header over an ES256 signature",
      token: async () => {
        const real = await asymmetricToken(
          await signingKey("ES256"),
          user.id,
        );
        const [, payload, signature] = real.split(".");
        const header = btoa(JSON.stringify({ alg: "HS256", typ: "JWT" }))
          .replaceAll("=", "").replaceAll("+", "-").replaceAll("/", "_");
        return `${header}.${payload}.${signature}`;
      },
    },
    { name: "garbage", token: () => Promise.resolve("abc.def.ghi") },
  ];

  for (const entry of cases) {
    await t.step(entry.name, async () => {
      const token = await entry.token();
      const response = await harness.call(
        "nebula-status",
        "GET",
        `/${crypto.randomUUID()}?projectId=${crypto.randomUUID()}`,
        { token },
      );

      const detail = await assertUnauthorized(response);
      assert.ok(!detail.includes(token), "the token is echoed back");
    });
  }
  const errors = harness.logs.filter((line) => line.level === "error");
  assert.deepEqual(errors, [], "a refused token must not be logged as error");
});

Deno.test("missing or malformed Authorization header is 401", async () => {
  await using harness = await startHarness();
  const path = `/${crypto.randomUUID()}?projectId=${crypto.randomUUID()}`;

  const missing = await harness.call("nebula-status", "GET", path);
  await assertUnauthorized(missing, "missing_token");

  const basic = await harness.call("nebula-status", "GET", path, {
    headers: { authorization: "Basic dXNlcjpwYXNz" },
  });
  await assertUnauthorized(basic);
});

Deno.test("deleted user's unexpired token is 401", async () => {
  await using harness = await startHarness();
  const user = await harness.createUser();
  await harness.db.query("delete from auth.users where id = $1", [user.id]);

  const response = await harness.call("nebula-project", "POST", "", {
    token: user.token,
    body: { name: "x", cidr: "10.1.0.0/24", lighthouses: [] },
  });

  const detail = await assertUnauthorized(response);
  assert.match(detail, /does not exist/);
});

Deno.test("deleted user's token is 401 before rate limits", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const user = await harness.createUser("member");
  await harness.db.query(
    "insert into public.project_members (project_id, user_id, role) values ($1, $2, 'member')",
    [project.id, user.id],
  );
  // An empty bucket for the user that refills once an hour.
  await harness.db.query(
    `insert into public.rate_limit_policies (project_id, scope, endpoint, capacity, refill_per_second)
     values ($1, 'user', 'nebula-register', 1, 0.0003)`,
    [project.id],
  );
  await harness.db.query(
    `insert into public.rate_limit_buckets (project_id, scope, endpoint, bucket_key, tokens, updated_at, full_at)
     values ($1, 'user', 'nebula-register', $2, 0, now(), now() + interval '1 hour')`,
    [project.id, user.id],
  );
  const register = async () =>
    await harness.call("nebula-register", "POST", "", {
      token: user.token,
      body: (await deviceRequest(project.id)).body,
    });
  const limited = await register();
  assert.equal(limited.status, 429);
  await limited.body?.cancel();

  await harness.db.query(
    "delete from public.project_members where user_id = $1",
    [
      user.id,
    ],
  );
  await harness.db.query("delete from auth.users where id = $1", [user.id]);
  // The user check and the rate limit run at once, and the user check wins.
  const response = await register();

  const detail = await assertUnauthorized(response);
  assert.match(detail, /does not exist/);
});

Deno.test("log lines never contain the access token", async () => {
  await using harness = await startHarness();
  const user = await harness.createUser();
  const expired = await signUserToken(user.id, {
    expiresAt: Math.floor(Date.now() / 1000) - 5,
  });

  await (await harness.call(
    "nebula-project",
    "GET",
    `/${crypto.randomUUID()}`,
    {
      token: user.token,
    },
  )).body?.cancel();
  await (await harness.call(
    "nebula-project",
    "GET",
    `/${crypto.randomUUID()}`,
    {
      token: expired,
    },
  )).body?.cancel();

  const text = JSON.stringify(harness.logs);
  assert.equal(harness.logs.length, 2);
  assert.ok(!text.includes(user.token), "valid token logged");
  assert.ok(!text.includes(expired), "expired token logged");
  assert.ok(!text.includes(user.token.split(".")[2]), "signature logged");
});

Deno.test("unreachable JWKS is a logged 500, not 401", async () => {
  await using harness = await startHarness();
  const user = await harness.createUser();
  const closed = serveJwks([]);
  await closed.close();
  const handle = createFunction("nebula-status", {
    ...harness.deps,
    auth: createAuthenticator(harness.db, {
      jwtSecret: LOCAL_JWT_SECRET,
      jwksUrl: closed.url,
      issuer: ISSUER,
    }),
  });
  const token = await asymmetricToken(await signingKey("ES256"), user.id);

  const response = await handle(statusRequest(token));

  assert.equal(response.status, 500);
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
  assert.equal((await readProblem(response)).code, "internal_error");
  const error = harness.logs.find((line) => line.level === "error");
  assert.match(String(error?.errorMessage), /JWKS/);
  assert.equal(typeof error?.cause, "string");
  assert.ok(!JSON.stringify(harness.logs).includes(token));
});
