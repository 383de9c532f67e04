/**
 * `local/server.ts` as `npm start` runs it, in its own process: over HTTP on
 * a PostgreSQL test database, and on the embedded PGlite database, whose data
 * and generated key-encryption key survive a restart.
 */
import assert from "node:assert/strict";
import {
  api,
  createDevUser,
  expectStatus,
  type LocalStack,
  startLocalStack,
} from "../e2e/stack.ts";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
import { createTestDatabase } from "../support/db.ts";

async function registerDevice(
  stack: LocalStack,
  token: string,
  projectId: string,
  deviceId = crypto.randomUUID(),
  publicKey?: string,
) {
  return await api(stack, "POST", "nebula-register", {
    token,
    body: {
      projectId,
      deviceId,
      deviceName: "smoke",
      publicKey: publicKey ?? (await generateX25519KeyPair()).publicPem,
    },
  });
}

function logLines(stack: LocalStack): Record<string, unknown>[] {
  return stack.logs().split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
}

const LIGHTHOUSES = [{ ip: "10.70.0.1", endpoints: ["192.0.2.70:4242"] }];

Deno.test("local server serves every function over HTTP on PostgreSQL", async () => {
  await using database = await createTestDatabase();
  await using stack = await startLocalStack(database.url);
  const user = await createDevUser(stack, "smoke@example.test");
  const again = await createDevUser(stack, "smoke@example.test");

  const created = expectStatus(
    await api(stack, "POST", "nebula-project", {
      token: user.access_token,
      body: { name: "Smoke", cidr: "10.70.0.0/24", lighthouses: LIGHTHOUSES },
    }),
    201,
  );
  const projectId = created.json.id;
  const keys = await generateX25519KeyPair();
  const deviceId = crypto.randomUUID();
  const first = await registerDevice(
    stack,
    user.access_token,
    projectId,
    deviceId,
    keys.publicPem,
  );
  const zip = await fetch(`${stack.functionsUrl}/nebula-register`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${user.access_token}`,
      "content-type": "application/json",
      accept: "application/zip",
    },
    body: JSON.stringify({
      projectId,
      deviceId,
      deviceName: "smoke",
      publicKey: keys.publicPem,
    }),
  });
  const zipBytes = new Uint8Array(await zip.arrayBuffer());
  const status = await api(
    stack,
    "GET",
    `nebula-status/${deviceId}?projectId=${projectId}`,
    { token: user.access_token },
  );
  const ca = await api(stack, "GET", `nebula-ca?projectId=${projectId}`);
  const preflight = await fetch(`${stack.functionsUrl}/nebula-register`, {
    method: "OPTIONS",
  });
  await preflight.body?.cancel();
  const unknownFunction = await api(stack, "GET", "nebula-nothing");
  const anonymous = await api(stack, "POST", "nebula-register", { body: {} });

  assert.equal(again.id, user.id, "dev:user finds the existing user");
  assert.equal(first.status, 201, first.text);
  assert.equal(first.json.ip, "10.70.0.2");
  assert.equal(zip.status, 200);
  assert.equal(zip.headers.get("content-type"), "application/zip");
  assert.equal(zip.headers.get("x-nebula-ip"), "10.70.0.2");
  assert.deepEqual([...zipBytes.slice(0, 4)], [0x50, 0x4b, 0x03, 0x04]);
  assert.equal(status.status, 200);
  assert.equal(status.json.ip, "10.70.0.2");
  assert.equal(status.json.ca.notAfter, created.json.ca.notAfter);
  assert.equal(ca.status, 200);
  assert.match(ca.text, /BEGIN NEBULA CERTIFICATE/);
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
  assert.equal(unknownFunction.status, 404);
  assert.equal(
    unknownFunction.headers.get("access-control-allow-origin"),
    "*",
  );
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.json.code, "missing_token");
  assert.equal(anonymous.headers.get("access-control-allow-origin"), "*");

  const requests = logLines(stack).filter((line) => line.msg === "request");
  const registers = requests.filter((line) =>
    line.function === "nebula-register" && line.deviceId === deviceId
  );
  assert.deepEqual(registers.map((line) => line.status), [201, 200]);
  for (const line of registers) {
    assert.equal(line.projectId, projectId);
    assert.equal(typeof line.requestId, "string");
    assert.equal(typeof line.durationMs, "number");
  }
  assert.ok(!stack.logs().includes(user.access_token), "token in the log");
  assert.ok(
    !stack.logs().includes(stack.env.NEBULA_CA_KEK),
    "key-encryption key in the log",
  );
});

Deno.test("local server on PGlite keeps data and its generated KEK across restarts", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "vidsync-local-" });
  const env = { DATABASE_URL: "", NEBULA_CA_KEK: "", LOCAL_DATA_DIR: dataDir };
  try {
    let projectId: string;
    let userId: string;
    {
      await using stack = await startLocalStack("", env);
      const user = await createDevUser(stack, "pglite@example.test");
      userId = user.id;
      const created = expectStatus(
        await api(stack, "POST", "nebula-project", {
          token: user.access_token,
          body: {
            name: "Embedded",
            cidr: "10.71.0.0/28",
            lighthouses: [{ ip: "10.71.0.1", endpoints: ["192.0.2.71:4242"] }],
          },
        }),
        201,
      );
      projectId = created.json.id;
      expectStatus(
        await registerDevice(stack, user.access_token, projectId),
        201,
      );
      assert.ok(
        logLines(stack).some((line) => line.database === "pglite"),
        "the stack did not report PGlite",
      );
    }
    const kekInfo = await Deno.stat(`${dataDir}/ca-kek`);
    assert.equal(kekInfo.mode! & 0o777, 0o600);

    await using restarted = await startLocalStack("", env);
    const user = await createDevUser(restarted, "pglite@example.test");
    const second = await registerDevice(
      restarted,
      user.access_token,
      projectId,
    );

    assert.equal(user.id, userId);
    assert.equal(second.status, 201, second.text);
    assert.equal(second.json.ip, "10.71.0.3");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
