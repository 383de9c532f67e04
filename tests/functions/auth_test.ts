/**
 * Access tokens at every authenticated endpoint. HS256 with the JWT secret and
 * ES256 through a JWKS served on 127.0.0.1 both verify. Every rejected token or
 * malformed header is a 401 problem document with CORS headers, never a 500,
 * and changes nothing. Every kind of response carries CORS headers.
 */
import assert from "node:assert/strict";
import { UnsecuredJWT } from "jose";
import { FUNCTION_ROUTES } from "../../shared/handlers/mod.ts";
import {
  assertCors,
  base64url,
  deviceRequest,
  type EcSigningKey,
  ecSigningKey,
  functionDeps,
  FUNCTIONS_BASE,
  functionsFor,
  type Harness,
  type JwksServer,
  type ProjectView,
  readProblem,
  rowCounts,
  serveJwks,
  signClaims,
  startHarness,
  type TestUser,
  userClaims,
} from "./support.ts";

interface Fixture {
  harness: Harness;
  jwks: JwksServer;
  key: EcSigningKey;
  owner: TestUser;
  stranger: TestUser;
  project: ProjectView;
  deviceId: string;
  call: (endpoint: Endpoint, authorization?: string) => Promise<Response>;
}

interface Endpoint {
  name: string;
  method: string;
  path: (fixture: Fixture) => string;
  body?: (fixture: Fixture) => unknown;
}

const ENDPOINTS: Endpoint[] = [
  {
    name: "nebula-project",
    method: "POST",
    path: () => "",
    body: () => ({ name: "x", cidr: "10.3.0.0/24" }),
  },
  { name: "nebula-project", method: "GET", path: (f) => `/${f.project.id}` },
  {
    name: "nebula-project",
    method: "PATCH",
    path: (f) => `/${f.project.id}`,
    body: () => ({ lighthouses: [] }),
  },
  {
    name: "nebula-project",
    method: "POST",
    path: (f) => `/${f.project.id}/members`,
    body: (f) => ({ userId: f.stranger.id, role: "owner" }),
  },
  {
    name: "nebula-project",
    method: "DELETE",
    path: (f) => `/${f.project.id}/members/${f.owner.id}`,
  },
  {
    name: "nebula-register",
    method: "POST",
    path: () => "",
    body: (f) => ({
      projectId: f.project.id,
      deviceId: f.deviceId,
      deviceName: "x",
      publicKey: "x",
    }),
  },
  {
    name: "nebula-status",
    method: "GET",
    path: (f) => `/${f.deviceId}?projectId=${f.project.id}`,
  },
  {
    name: "nebula-release",
    method: "POST",
    path: (f) => `/${f.deviceId}?projectId=${f.project.id}`,
  },
  {
    name: "nebula-renew",
    method: "POST",
    path: () => "",
    body: (f) => ({ projectId: f.project.id, deviceId: f.deviceId }),
  },
  {
    name: "nebula-config",
    method: "GET",
    path: (f) => `/${f.deviceId}?projectId=${f.project.id}`,
  },
  {
    name: "nebula-heartbeat",
    method: "POST",
    path: (f) => `/${f.deviceId}?projectId=${f.project.id}`,
  },
  {
    name: "nebula-revoke",
    method: "POST",
    path: () => "",
    body: (f) => ({ projectId: f.project.id, deviceId: f.deviceId }),
  },
];

function label(endpoint: Endpoint): string {
  return `${endpoint.method} ${endpoint.name}`;
}

async function withFixture(run: (fixture: Fixture) => Promise<void>) {
  await using harness = await startHarness();
  const key = await ecSigningKey();
  await using jwks = serveJwks([key.publicJwk]);
  const handlerFor = functionsFor(
    functionDeps(harness.db, { jwksUrl: jwks.url, kek: harness.deps.kek }),
  );
  const owner = await harness.createUser("owner");
  const stranger = await harness.createUser("stranger");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const registered = await harness.call("nebula-register", "POST", "", {
    token: owner.token,
    body,
  });
  assert.equal(registered.status, 201, await registered.text());

  const fixture: Fixture = {
    harness,
    jwks,
    key,
    owner,
    stranger,
    project,
    deviceId: body.deviceId,
    call: (endpoint, authorization) => {
      const headers = new Headers({ origin: "https://app.example" });
      if (authorization !== undefined) {
        headers.set("authorization", authorization);
      }
      const payload = endpoint.body?.(fixture);
      if (payload !== undefined) {
        headers.set("content-type", "application/json");
      }
      return handlerFor(endpoint.name)(
        new Request(
          `${FUNCTIONS_BASE}/${endpoint.name}${endpoint.path(fixture)}`,
          {
            method: endpoint.method,
            headers,
            body: payload === undefined ? undefined : JSON.stringify(payload),
          },
        ),
      );
    },
  };
  await run(fixture);
}

async function assertRejected(
  response: Response,
  where: string,
  code = "invalid_token",
): Promise<string> {
  assert.equal(response.status, 401, where);
  assertCors(response, where);
  const problem = await readProblem(response);
  assert.equal(problem.status, 401, where);
  assert.equal(problem.code, code, where);
  assert.equal(typeof problem.detail, "string", where);
  return JSON.stringify(problem);
}

Deno.test("HS256 and ES256 tokens with equal claims verify alike", async () => {
  await withFixture(async ({ owner, key, project, call, jwks }) => {
    const claims = userClaims(owner.id);
    const hs256 = await signClaims(claims, {});
    const es256 = await signClaims(claims, { key });
    const read = ENDPOINTS[1];

    const viaSecret = await call(read, `Bearer ${hs256}`);
    const viaJwks = await call(read, `Bearer ${es256}`);

    assert.equal(viaSecret.status, 200);
    assert.equal(viaJwks.status, 200);
    assertCors(viaJwks);
    const [secretView, jwksView] = [
      await viaSecret.json(),
      await viaJwks.json(),
    ];
    assert.equal(secretView.id, project.id);
    assert.equal(secretView.role, "owner");
    assert.deepEqual(jwksView, secretView);
    assert.ok(jwks.hits() >= 1, "the ES256 token was checked against the JWKS");
  });
});

Deno.test("invalid access tokens are 401 everywhere", async () => {
  await withFixture(async (fixture) => {
    const { owner, key, harness } = fixture;
    const now = Math.floor(Date.now() / 1000);
    const strangerKey = await ecSigningKey();
    const valid = await signClaims(userClaims(owner.id), { key });
    const [validHeader, validPayload, validSignature] = valid.split(".");
    const tokens: Record<string, string> = {
      "alg none": new UnsecuredJWT(userClaims(owner.id)).encode(),
      "alg none with a signature": `${
        base64url({ alg: "none", typ: "JWT" })
      }.${validPayload}.${validSignature}`,
      "HS256 expired": await signClaims(
        userClaims(owner.id, { exp: now - 60 }),
        {},
      ),
      "ES256 expired": await signClaims(
        userClaims(owner.id, { exp: now - 60 }),
        { key },
      ),
      "HS256 wrong audience": await signClaims(
        userClaims(owner.id, { aud: "service" }),
        {},
      ),
      "ES256 wrong audience": await signClaims(
        userClaims(owner.id, { aud: "anon" }),
        { key },
      ),
      "HS256 wrong issuer": await signClaims(
        userClaims(owner.id, { iss: "https://other.supabase.co/auth/v1" }),
        {},
      ),
      "ES256 wrong issuer": await signClaims(
        userClaims(owner.id, { iss: "https://other.supabase.co/auth/v1" }),
        { key },
      ),
      "wrong secret": await signClaims(userClaims(owner.id), {
        secret: "another-secret-that-is-also-32-characters-long",
      }),
      "public JWK used as HS256 secret": await signClaims(
        userClaims(owner.id),
        { secret: JSON.stringify(key.publicJwk) },
      ),
      "ES256 key missing from the JWKS": await signClaims(
        userClaims(owner.id),
        { key: strangerKey },
      ),
      "HS256 header over an ES256 signature": `${
        base64url({ alg: "HS256", typ: "JWT" })
      }.${validPayload}.${validSignature}`,
      "RS256 header over an ES256 signature": `${
        base64url({ alg: "RS256", kid: key.kid, typ: "JWT" })
      }.${validPayload}.${validSignature}`,
      "tampered payload": `${validHeader}.${
        base64url(userClaims(fixture.stranger.id))
      }.${validSignature}`,
      "no expiry": await signClaims(
        userClaims(owner.id, { exp: undefined }),
        {},
      ),
      "not yet valid": await signClaims(
        userClaims(owner.id, { nbf: now + 3600 }),
        {},
      ),
      "subject not a uuid": await signClaims(
        userClaims(owner.id, { sub: "owner@example.test" }),
        {},
      ),
      "user not in auth.users": await signClaims(
        userClaims(crypto.randomUUID()),
        { key },
      ),
      "anon role": await signClaims(
        userClaims(owner.id, { role: "anon" }),
        {},
      ),
      "anon key": await signClaims(
        { role: "anon", iss: "supabase", iat: now, exp: now + 3600 },
        {},
      ),
      "service_role key": await signClaims(
        { role: "service_role", iss: "supabase", iat: now, exp: now + 3600 },
        {},
      ),
      "header not JSON": `${btoa("nope")}.${validPayload}.${validSignature}`,
    };
    const before = await rowCounts(harness.db);
    const failures: string[] = [];

    for (const endpoint of ENDPOINTS) {
      for (const [name, token] of Object.entries(tokens)) {
        const where = `${label(endpoint)} with ${name}`;
        const response = await fixture.call(endpoint, `Bearer ${token}`);
        if (response.status !== 401) {
          failures.push(
            `${where}: ${response.status} ${
              (await response.text()).slice(0, 160)
            }`,
          );
          continue;
        }
        const problem = await assertRejected(response, where);
        if (problem.includes(token)) failures.push(`${where}: token echoed`);
      }
    }

    assert.deepEqual(failures, []);
    assert.deepEqual(await rowCounts(harness.db), before);
  });
});

Deno.test("malformed Authorization headers are 401 everywhere", async () => {
  await withFixture(async (fixture) => {
    const token = await signClaims(userClaims(fixture.owner.id), {});
    const headers: Record<string, string> = {
      "Basic credentials": "Basic dXNlcjpwYXNz",
      "scheme only": "Bearer",
      "scheme and space": "Bearer ",
      "token without scheme": token,
      "other scheme": `Token ${token}`,
      "two parts": "Bearer abc.def",
      "four parts": `Bearer ${token}.abc`,
      "two tokens": `Bearer ${token} ${token}`,
      "trailing comma": `Bearer ${token},`,
      "tab separator": `Bearer\t${token}`,
      "double space": `Bearer  ${token}`,
      "quoted token": `Bearer "${token}"`,
      "standard base64 padding": `Bearer ${token}==`,
      "garbage parts": "Bearer abc.def.ghi",
      "empty parts": "Bearer ..",
      "16 KiB token": `Bearer ${"a".repeat(16_384)}.b.c`,
    };
    const failures: string[] = [];

    for (const endpoint of ENDPOINTS) {
      const missing = await fixture.call(endpoint);
      await assertRejected(
        missing,
        `${label(endpoint)} without header`,
        "missing_token",
      );
      for (const [name, value] of Object.entries(headers)) {
        const response = await fixture.call(endpoint, value);
        if (response.status !== 401) {
          failures.push(`${label(endpoint)} ${name}: ${response.status}`);
          await response.body?.cancel();
          continue;
        }
        await assertRejected(response, `${label(endpoint)} ${name}`);
      }
    }

    assert.deepEqual(failures, []);
  });
});

Deno.test("non-member valid token passes authentication", async () => {
  await withFixture(async (fixture) => {
    const token = await signClaims(userClaims(fixture.stranger.id), {
      key: fixture.key,
    });
    const before = await rowCounts(fixture.harness.db);

    for (const endpoint of ENDPOINTS) {
      const response = await fixture.call(endpoint, `Bearer ${token}`);
      const body = await response.text();

      assert.ok(
        response.status !== 401 && response.status < 500,
        `${label(endpoint)}: ${response.status} ${body.slice(0, 160)}`,
      );
      assertCors(response, label(endpoint));
    }
    assert.deepEqual(await rowCounts(fixture.harness.db), before);
  });
});

Deno.test("OPTIONS preflight is 204 without token", async () => {
  await using harness = await startHarness();

  for (const name of Object.keys(FUNCTION_ROUTES)) {
    for (const path of ["", `/${crypto.randomUUID()}`, "/no/such/path"]) {
      const response = await harness.call(name, "OPTIONS", path, {
        headers: {
          origin: "https://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type",
        },
      });

      assert.equal(response.status, 204, `${name}${path}`);
      assert.equal(await response.text(), "");
      assertCors(response, `${name}${path}`);
    }
  }
  assert.equal(harness.logs.length, 0, "a preflight is not a request to log");
});

Deno.test("CORS headers on 200 through 500 responses", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const stranger = await harness.createUser("stranger");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const seen = new Map<number, Response>();
  const keep = (response: Response) => seen.set(response.status, response);

  keep(
    await harness.call("nebula-register", "POST", "", {
      token: owner.token,
      body,
    }),
  );
  keep(await harness.call("nebula-ca", "GET", `?projectId=${project.id}`));
  keep(await harness.call("nebula-project", "GET", `/${project.id}`));
  keep(
    await harness.call("nebula-project", "GET", `/${project.id}`, {
      token: stranger.token,
    }),
  );
  keep(await harness.call("nebula-register", "POST", "/no/such/path"));
  keep(await harness.call("nebula-register", "GET", ""));
  keep(
    await harness.call("nebula-register", "POST", "", {
      token: stranger.token,
      body: { ...body, projectId: project.id },
    }),
  );
  await (await harness.call(
    "nebula-project",
    "POST",
    `/${project.id}/members`,
    {
      token: owner.token,
      body: { userId: stranger.id, role: "member" },
    },
  )).body?.cancel();
  keep(
    await harness.call("nebula-register", "POST", "", {
      token: stranger.token,
      body,
    }),
  );
  // A key-encryption key that cannot open the CA key makes signing fail.
  harness.deps.kek = crypto.getRandomValues(new Uint8Array(32));
  keep(
    await harness.call("nebula-register", "POST", "", {
      token: owner.token,
      body: (await deviceRequest(project.id)).body,
    }),
  );

  assert.deepEqual(
    [...seen.keys()].sort(),
    [200, 201, 401, 403, 404, 405, 409, 500],
  );
  for (const [status, response] of seen) {
    assertCors(response, String(status));
    assert.ok(response.headers.get("x-request-id"), `${status} request id`);
    await response.body?.cancel();
  }
});
