/**
 * `nebula-renew`, `nebula-config`, `nebula-heartbeat`, `nebula-revoke` and
 * `nebula-reclaim` in-process on real PostgreSQL, with a settable clock and
 * Debian's `nebula-cert` checking the renewed certificates.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { decodeBase64 } from "../../shared/pki/base64.ts";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
import {
  deviceRequest,
  type Harness,
  readProblem,
  rowCounts,
  startHarness,
  type TestUser,
  unpackBundle,
} from "./harness.ts";

const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;
const RECLAIM_SECRET = "reclaim-secret-for-tests-0123456789abcdef";

interface Registered {
  deviceId: string;
  ip: string;
  fingerprint: string;
}

async function registerDevice(
  harness: Harness,
  user: TestUser,
  projectId: string,
  extra: Record<string, unknown> = {},
): Promise<Registered> {
  const { body } = await deviceRequest(projectId, extra);
  const response = await harness.call("nebula-register", "POST", "", {
    token: user.token,
    body,
  });
  assert.equal(response.status, 201, await response.clone().text());
  const json = await response.json();
  return {
    deviceId: body.deviceId as string,
    ip: json.ip,
    fingerprint: json.certificate.fingerprint,
  };
}

async function addMember(
  harness: Harness,
  owner: TestUser,
  projectId: string,
  role: "admin" | "member",
): Promise<TestUser> {
  const user = await harness.createUser(role);
  const response = await harness.call(
    "nebula-project",
    "POST",
    `/${projectId}/members`,
    { token: owner.token, body: { userId: user.id, role } },
  );
  assert.ok(response.ok, await response.text());
  return user;
}

function renew(
  harness: Harness,
  user: TestUser,
  body: Record<string, unknown>,
) {
  return harness.call("nebula-renew", "POST", "", { token: user.token, body });
}

function getConfig(
  harness: Harness,
  user: TestUser,
  projectId: string,
  deviceId: string,
  headers: Record<string, string> = {},
) {
  return harness.call(
    "nebula-config",
    "GET",
    `/${deviceId}?projectId=${projectId}`,
    { token: user.token, headers },
  );
}

async function revocationOf(harness: Harness, fingerprint: string) {
  const [row] = await harness.db.query<
    { revoked_at: Date | null; revocation_reason: string | null }
  >(
    "select revoked_at, revocation_reason from public.nebula_certificates where fingerprint = $1",
    [fingerprint],
  );
  return row;
}

async function nebulaCertVerify(dir: string): Promise<string> {
  const output = await new Deno.Command("nebula-cert", {
    args: ["verify", "-ca", `${dir}/ca.crt`, "-crt", `${dir}/node.crt`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) +
    new TextDecoder().decode(output.stderr);
  return output.success ? "valid" : text;
}

Deno.test("nebula-renew keeps the ip and re-signs the same key", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  // Set up two hours ago, so the renewed certificate is valid now for
  // nebula-cert verify, which also rejects a NotBefore in the future.
  harness.setNow(new Date(Date.now() - 2 * HOUR_MS));
  const project = await harness.createProject(owner);
  const device = await registerDevice(harness, owner, project.id);
  const dir = await Deno.makeTempDir({ prefix: "vidsync-renew-" });
  try {
    harness.setNow(new Date());

    const response = await renew(harness, owner, {
      projectId: project.id,
      deviceId: device.deviceId,
    });
    assert.equal(response.status, 200);
    const body = await response.json();
    await unpackBundle(decodeBase64(body.bundle), dir);

    assert.equal(body.ip, device.ip);
    assert.equal(response.headers.get("x-nebula-ip"), device.ip);
    assert.notEqual(body.certificate.fingerprint, device.fingerprint);
    assert.equal(body.previousFingerprint, device.fingerprint);
    assert.deepEqual(body.revokedFingerprints, []);
    assert.equal(
      (await revocationOf(harness, device.fingerprint)).revoked_at,
      null,
    );
    assert.equal(await nebulaCertVerify(dir), "valid");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("nebula-renew with a new key revokes the old certificate", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const device = await registerDevice(harness, owner, project.id);
  const keys = await generateX25519KeyPair();
  harness.setNow(new Date(Date.now() + HOUR_MS));

  const response = await renew(harness, owner, {
    projectId: project.id,
    deviceId: device.deviceId,
    publicKey: keys.publicPem,
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  const old = await revocationOf(harness, device.fingerprint);
  const config = parse(
    await (await getConfig(harness, owner, project.id, device.deviceId)).text(),
  );

  assert.equal(body.ip, device.ip);
  assert.deepEqual(body.revokedFingerprints, [device.fingerprint]);
  assert.notEqual(old.revoked_at, null);
  assert.equal(old.revocation_reason, "key_changed");
  assert.ok(config.pki.blocklist.includes(device.fingerprint));
  assert.ok(!config.pki.blocklist.includes(body.certificate.fingerprint));
});

Deno.test("nebula-renew by another member changes nothing", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const member = await addMember(harness, owner, project.id, "member");
  const stranger = await harness.createUser("stranger");
  const device = await registerDevice(harness, owner, project.id);
  const before = await rowCounts(harness.db);

  const byMember = await renew(harness, member, {
    projectId: project.id,
    deviceId: device.deviceId,
  });
  const byStranger = await renew(harness, stranger, {
    projectId: project.id,
    deviceId: device.deviceId,
  });
  const badKey = await renew(harness, owner, {
    projectId: project.id,
    deviceId: device.deviceId,
    publicKey: "not a key",
  });

  assert.equal(byMember.status, 409);
  assert.equal(
    (await readProblem(byMember)).code,
    "device_owned_by_other_user",
  );
  assert.equal(byStranger.status, 403);
  assert.equal((await readProblem(byStranger)).code, "forbidden");
  assert.equal(badKey.status, 400);
  assert.equal((await readProblem(badKey)).code, "invalid_public_key");
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("nebula-renew of a revoked device is rejected", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const device = await registerDevice(harness, owner, project.id);
  const revoke = await harness.call("nebula-revoke", "POST", "", {
    token: owner.token,
    body: { projectId: project.id, deviceId: device.deviceId },
  });
  assert.equal(revoke.status, 200);

  const response = await renew(harness, owner, {
    projectId: project.id,
    deviceId: device.deviceId,
  });

  assert.equal(response.status, 403);
  assert.equal((await readProblem(response)).code, "certificate_revoked");
});

Deno.test("nebula-config answers 304 until a revoke changes it", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const peer = await registerDevice(harness, owner, project.id);
  const other = await registerDevice(harness, owner, project.id);

  const first = await getConfig(harness, owner, project.id, peer.deviceId);
  assert.equal(first.status, 200);
  assert.equal(first.headers.get("content-type"), "application/yaml");
  const etag = first.headers.get("etag")!;
  assert.match(etag, /^"[\w-]{43}"$/);
  const firstConfig = parse(await first.text());
  assert.ok(!firstConfig.pki.blocklist?.includes(other.fingerprint));

  const unchanged = await getConfig(harness, owner, project.id, peer.deviceId, {
    "if-none-match": etag,
  });
  assert.equal(unchanged.status, 304);
  assert.equal(await unchanged.text(), "");
  assert.equal(unchanged.headers.get("etag"), etag);

  const revoke = await harness.call("nebula-revoke", "POST", "", {
    token: owner.token,
    body: {
      projectId: project.id,
      fingerprint: other.fingerprint,
      reason: "laptop stolen",
    },
  });
  assert.equal(revoke.status, 200);
  assert.deepEqual((await revoke.json()).revokedFingerprints, [
    other.fingerprint,
  ]);

  const changed = await getConfig(harness, owner, project.id, peer.deviceId, {
    "if-none-match": etag,
  });
  assert.equal(changed.status, 200);
  assert.notEqual(changed.headers.get("etag"), etag);
  const config = parse(await changed.text());
  assert.deepEqual(config.pki.blocklist, [other.fingerprint]);
  assert.equal(
    (await revocationOf(harness, other.fingerprint)).revocation_reason,
    "laptop stolen",
  );
});

Deno.test("nebula-config is for the owner and project admins", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const admin = await addMember(harness, owner, project.id, "admin");
  const member = await addMember(harness, owner, project.id, "member");
  const device = await registerDevice(harness, owner, project.id);

  const byAdmin = await getConfig(harness, admin, project.id, device.deviceId);
  const byMember = await getConfig(
    harness,
    member,
    project.id,
    device.deviceId,
  );
  const unknown = await getConfig(
    harness,
    owner,
    project.id,
    crypto.randomUUID(),
  );
  const anonymous = await harness.call(
    "nebula-config",
    "GET",
    `/${device.deviceId}?projectId=${project.id}`,
  );

  assert.equal(byAdmin.status, 200);
  await byAdmin.body?.cancel();
  assert.equal(byMember.status, 403);
  assert.equal((await readProblem(byMember)).code, "forbidden");
  assert.equal(unknown.status, 404);
  assert.equal((await readProblem(unknown)).code, "device_not_found");
  assert.equal(anonymous.status, 401);
  assert.equal((await readProblem(anonymous)).code, "missing_token");
});

Deno.test("nebula-heartbeat records last seen", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const member = await addMember(harness, owner, project.id, "member");
  const device = await registerDevice(harness, owner, project.id);
  const seen = new Date(Date.now() + HOUR_MS);
  harness.setNow(seen);

  const response = await harness.call(
    "nebula-heartbeat",
    "POST",
    `/${device.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );
  const byMember = await harness.call(
    "nebula-heartbeat",
    "POST",
    `/${device.deviceId}?projectId=${project.id}`,
    { token: member.token },
  );
  const status = await harness.call(
    "nebula-status",
    "GET",
    `/${device.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );

  assert.equal(response.status, 200);
  assert.equal((await response.json()).lastSeen, seen.toISOString());
  assert.equal(byMember.status, 403);
  await byMember.body?.cancel();
  assert.equal((await status.json()).lastSeen, seen.toISOString());
});

Deno.test("nebula-revoke rejects members and bad input", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const member = await addMember(harness, owner, project.id, "member");
  const device = await registerDevice(harness, owner, project.id);
  const before = await rowCounts(harness.db);
  const cases: [TestUser, Record<string, unknown>, number, string][] = [
    [member, { deviceId: device.deviceId }, 403, "forbidden"],
    [member, { fingerprint: device.fingerprint }, 403, "forbidden"],
    [
      owner,
      {
        deviceId: device.deviceId,
        fingerprint: device.fingerprint,
      },
      400,
      "invalid_input",
    ],
    [owner, {}, 400, "invalid_input"],
    [owner, { fingerprint: "ab12" }, 400, "invalid_input"],
    [owner, { fingerprint: "0".repeat(64) }, 404, "not_found"],
    [owner, { deviceId: crypto.randomUUID() }, 404, "device_not_found"],
  ];

  for (const [user, body, status, code] of cases) {
    const response = await harness.call("nebula-revoke", "POST", "", {
      token: user.token,
      body: { projectId: project.id, ...body },
    });
    const label = JSON.stringify(body);
    assert.equal(response.status, status, label);
    assert.equal((await readProblem(response)).code, code, label);
  }
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("nebula-reclaim rejects a missing or wrong secret", async () => {
  await using harness = await startHarness();
  harness.deps.reclaimSecret = RECLAIM_SECRET;
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  await registerDevice(harness, owner, project.id);
  harness.setNow(new Date(Date.now() + 100 * DAY_MS));
  const before = await rowCounts(harness.db);

  const missing = await harness.call("nebula-reclaim", "POST", "");
  const wrong = await harness.call("nebula-reclaim", "POST", "", {
    headers: { "x-reclaim-secret": `${RECLAIM_SECRET}x` },
  });
  const userToken = await harness.call("nebula-reclaim", "POST", "", {
    token: owner.token,
  });

  for (const response of [missing, wrong, userToken]) {
    assert.equal(response.status, 401);
    assert.equal((await readProblem(response)).code, "invalid_reclaim_secret");
  }
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("nebula-reclaim rejects every call without a configured secret", async () => {
  await using harness = await startHarness();

  const response = await harness.call("nebula-reclaim", "POST", "", {
    headers: { "x-reclaim-secret": "" },
  });

  assert.equal(response.status, 401);
  assert.equal((await readProblem(response)).code, "invalid_reclaim_secret");
});

Deno.test("nebula-reclaim releases idle devices but not lighthouses", async () => {
  await using harness = await startHarness();
  harness.deps.reclaimSecret = RECLAIM_SECRET;
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const lighthouse = await registerDevice(harness, owner, project.id, {
    lighthouse: true,
  });
  const idle = await registerDevice(harness, owner, project.id);
  const active = await registerDevice(harness, owner, project.id);
  const later = new Date(Date.now() + 100 * DAY_MS);
  harness.setNow(later);
  const heartbeat = await harness.call(
    "nebula-heartbeat",
    "POST",
    `/${active.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );
  assert.equal(heartbeat.status, 200);

  const response = await harness.call("nebula-reclaim", "POST", "", {
    headers: { "x-reclaim-secret": RECLAIM_SECRET },
  });
  assert.equal(response.status, 200);
  const { reclaimed } = await response.json();
  const idleStatus = await harness.call(
    "nebula-status",
    "GET",
    `/${idle.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );
  const lighthouseStatus = await harness.call(
    "nebula-status",
    "GET",
    `/${lighthouse.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );

  assert.deepEqual(
    reclaimed.map((device: { deviceId: string }) => device.deviceId),
    [idle.deviceId],
  );
  assert.equal(reclaimed[0].ip.split("/")[0], idle.ip);
  assert.deepEqual(reclaimed[0].revokedFingerprints, []);
  assert.equal(idleStatus.status, 404);
  await idleStatus.body?.cancel();
  assert.equal(lighthouseStatus.status, 200);
  await lighthouseStatus.body?.cancel();
});
