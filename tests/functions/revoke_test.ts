/**
 * `nebula-revoke` against the registration checks, in-process on real
 * PostgreSQL: certificates that the service revoked itself, expired
 * certificates, and a revocation racing a registration of the same device
 * or of the same key on a new device. Held transactions fix the order of the
 * race.
 */
import assert from "node:assert/strict";
import { parseDevicePublicKey } from "../../shared/pki/keys.ts";
import { holdTransaction, waitForLockWait } from "../support/locks.ts";
import {
  deviceRequest,
  type Harness,
  readProblem,
  startHarness,
  type TestUser,
} from "./harness.ts";

const HOUR_MS = 3600 * 1000;

type RegisterBody = Awaited<ReturnType<typeof deviceRequest>>["body"];

function register(harness: Harness, user: TestUser, body: RegisterBody) {
  return harness.call("nebula-register", "POST", "", {
    token: user.token,
    body,
  });
}

async function registerFingerprint(
  harness: Harness,
  user: TestUser,
  body: RegisterBody,
  status: number,
): Promise<string> {
  const response = await register(harness, user, body);
  assert.equal(response.status, status, await response.clone().text());
  return (await response.json()).certificate.fingerprint;
}

async function revoke(
  harness: Harness,
  user: TestUser,
  body: Record<string, unknown>,
) {
  const response = await harness.call("nebula-revoke", "POST", "", {
    token: user.token,
    body,
  });
  assert.equal(response.status, 200, await response.clone().text());
  return await response.json() as {
    revokedFingerprints: string[];
    revokedAt: string;
  };
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

async function assertRevokedKey(
  harness: Harness,
  user: TestUser,
  body: RegisterBody,
) {
  const response = await register(harness, user, {
    ...body,
    deviceId: crypto.randomUUID(),
  });
  assert.equal(response.status, 403, "the key registers under a new id");
  assert.equal((await readProblem(response)).code, "certificate_revoked");
}

/** Counts the unrevoked certificates of public keys revoked on request. */
async function unrevokedRevokedKeyCount(harness: Harness, projectId: string) {
  const [row] = await harness.db.query<{ count: number }>(
    `select count(*)::int as count from public.nebula_certificates c
     where c.project_id = $1 and c.revoked_at is null
       and public.is_nebula_public_key_revoked(c.project_id, c.public_key)`,
    [projectId],
  );
  return row.count;
}

Deno.test("revoke replaces the key_changed reason", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const first = await registerFingerprint(harness, owner, body, 201);
  harness.setNow(new Date(Date.now() + 2000));
  const newKey = (await deviceRequest(project.id)).body.publicKey;
  const renewed = { ...body, publicKey: newKey };
  await registerFingerprint(harness, owner, renewed, 200);
  const keyChanged = await revocationOf(harness, first);
  assert.equal(keyChanged.revocation_reason, "key_changed");
  harness.setNow(new Date(Date.now() + 4000));

  const result = await revoke(harness, owner, {
    projectId: project.id,
    fingerprint: first,
    reason: "laptop stolen",
  });

  assert.deepEqual(result.revokedFingerprints, [first]);
  assert.equal(
    new Date(result.revokedAt).getTime(),
    keyChanged.revoked_at!.getTime(),
  );
  const stored = await revocationOf(harness, first);
  assert.equal(stored.revocation_reason, "laptop stolen");
  assert.equal(stored.revoked_at!.getTime(), keyChanged.revoked_at!.getTime());
  const [audit] = await harness.db.query<{ before: unknown }>(
    `select before from public.audit_log
     where action = 'certificate.revoke' and target_id = $1`,
    [first],
  );
  assert.deepEqual(audit.before, {
    revokedAt: keyChanged.revoked_at!.toISOString(),
    reason: "key_changed",
  });
  await assertRevokedKey(harness, owner, body);
  await registerFingerprint(harness, owner, renewed, 200);
});

Deno.test("revoke replaces the released reason", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const first = await registerFingerprint(harness, owner, body, 201);
  const release = await harness.call(
    "nebula-release",
    "POST",
    `/${body.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );
  assert.equal(release.status, 200);
  assert.equal(
    (await revocationOf(harness, first)).revocation_reason,
    "released",
  );

  const result = await revoke(harness, owner, {
    projectId: project.id,
    fingerprint: first,
    reason: "laptop stolen",
  });
  const again = await revoke(harness, owner, {
    projectId: project.id,
    fingerprint: first,
    reason: "other reason",
  });

  assert.deepEqual(result.revokedFingerprints, [first]);
  assert.deepEqual(again.revokedFingerprints, []);
  const stored = await revocationOf(harness, first);
  assert.equal(stored.revocation_reason, "laptop stolen");
  harness.setNow(new Date(Date.now() + 2000));
  await assertRevokedKey(harness, owner, body);
  const newKey = (await deviceRequest(project.id)).body.publicKey;
  await registerFingerprint(
    harness,
    owner,
    { ...body, publicKey: newKey },
    201,
  );
});

Deno.test("revoke device covers expired certificates", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner, {
    hostCertLifetimeHours: 1,
  });
  const { body } = await deviceRequest(project.id);
  const first = await registerFingerprint(harness, owner, body, 201);
  const later = new Date(Date.now() + 2 * HOUR_MS);
  harness.setNow(later);

  const result = await revoke(harness, owner, {
    projectId: project.id,
    deviceId: body.deviceId,
    reason: "laptop stolen",
  });

  assert.deepEqual(result.revokedFingerprints, [first]);
  const stored = await revocationOf(harness, first);
  assert.equal(stored.revocation_reason, "laptop stolen");
  const blocklist = await harness.db.query(
    "select public.get_nebula_blocklist($1, $2)",
    [project.id, later],
  );
  assert.equal(blocklist.length, 0, "an expired certificate stays off");
  const sameDevice = await register(harness, owner, body);
  assert.equal(sameDevice.status, 403);
  assert.equal((await readProblem(sameDevice)).code, "certificate_revoked");
  await assertRevokedKey(harness, owner, body);
});

Deno.test("revoke device replaces lifecycle reasons of its keys", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const first = await registerFingerprint(harness, owner, body, 201);
  harness.setNow(new Date(Date.now() + 2000));
  const newKey = (await deviceRequest(project.id)).body.publicKey;
  const second = await registerFingerprint(
    harness,
    owner,
    { ...body, publicKey: newKey },
    200,
  );

  const result = await revoke(harness, owner, {
    projectId: project.id,
    deviceId: body.deviceId,
    reason: "laptop stolen",
  });

  assert.deepEqual(result.revokedFingerprints, [first, second].sort());
  assert.equal(
    (await revocationOf(harness, first)).revocation_reason,
    "laptop stolen",
  );
  harness.setNow(new Date(Date.now() + 4000));
  await assertRevokedKey(harness, owner, body);
});

/**
 * Runs the first half of a registration of `body` in a held transaction,
 * which locks the device row, and stores a certificate for its key.
 */
function holdRegistration(
  harness: Harness,
  owner: TestUser,
  body: RegisterBody,
  fingerprint: string,
) {
  return holdTransaction(harness.db, async (tx) => {
    await tx.query(
      `select public.register_nebula_device(
         $1, $2, $3, $4, $5, false, null, now())`,
      [
        body.projectId,
        body.deviceId,
        owner.id,
        body.deviceName,
        parseDevicePublicKey(body.publicKey),
      ],
    );
    const newFingerprint = "f".repeat(64);
    await tx.query(
      `insert into public.nebula_certificates (fingerprint, project_id,
         device_id, ca_fingerprint, ip, name, groups, public_key, not_before,
         not_after)
       select $2, project_id, device_id, ca_fingerprint, ip, name, groups,
         public_key, not_before + interval '1 second',
         not_after + interval '1 second'
       from public.nebula_certificates where fingerprint = $1`,
      [fingerprint, newFingerprint],
    );
    return newFingerprint;
  });
}

/** Revokes `fingerprint` in a held transaction, which locks its device rows and key. */
function holdRevoke(harness: Harness, projectId: string, fingerprint: string) {
  return holdTransaction(harness.db, (tx) =>
    tx.query(
      "select * from public.revoke_nebula_certificate($1, $2, 'laptop stolen', now())",
      [projectId, fingerprint],
    ));
}

Deno.test("revoke waits for a registration of the device", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const first = await registerFingerprint(harness, owner, body, 201);
  const heldRegistration = holdRegistration(harness, owner, body, first);
  const newFingerprint = await heldRegistration.ready;

  const revoking = revoke(harness, owner, {
    projectId: project.id,
    fingerprint: first,
    reason: "laptop stolen",
  });
  await waitForLockWait(harness.db, "revoke_nebula_certificate");
  await heldRegistration.commit();
  const result = await revoking;

  assert.deepEqual(result.revokedFingerprints, [first, newFingerprint].sort());
  const stored = await revocationOf(harness, newFingerprint);
  assert.equal(stored.revocation_reason, "laptop stolen");
  assert.equal(await unrevokedRevokedKeyCount(harness, project.id), 0);
});

Deno.test("registration waits for a revoke of the device", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const first = await registerFingerprint(harness, owner, body, 201);
  harness.setNow(new Date(Date.now() + 2000));
  const heldRevoke = holdRevoke(harness, project.id, first);
  await heldRevoke.ready;

  const registering = register(harness, owner, body);
  await waitForLockWait(harness.db, "register_nebula_device");
  await heldRevoke.commit();
  const response = await registering;

  assert.equal(response.status, 403);
  assert.equal((await readProblem(response)).code, "certificate_revoked");
  assert.equal(await unrevokedRevokedKeyCount(harness, project.id), 0);
});

/** Registers `body`, releases the device and returns the certificate fingerprint and a new device id with the same key. */
async function releasedKey(
  harness: Harness,
  owner: TestUser,
  body: RegisterBody,
) {
  const first = await registerFingerprint(harness, owner, body, 201);
  const release = await harness.call(
    "nebula-release",
    "POST",
    `/${body.deviceId}?projectId=${body.projectId}`,
    { token: owner.token },
  );
  assert.equal(release.status, 200);
  harness.setNow(new Date(Date.now() + 2000));
  const other = { ...body, deviceId: crypto.randomUUID(), deviceName: "other" };
  return { first, other };
}

Deno.test("new device with revoked key waits", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const { first, other } = await releasedKey(harness, owner, body);
  const heldRevoke = holdRevoke(harness, project.id, first);
  await heldRevoke.ready;

  const registering = register(harness, owner, other);
  await waitForLockWait(harness.db, "register_nebula_device");
  await heldRevoke.commit();
  const response = await registering;

  assert.equal(response.status, 403);
  assert.equal((await readProblem(response)).code, "certificate_revoked");
  assert.equal(await unrevokedRevokedKeyCount(harness, project.id), 0);
});

Deno.test("key revoke waits for new device", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const { first, other } = await releasedKey(harness, owner, body);
  const newFingerprint = "e".repeat(64);
  const heldRegistration = holdTransaction(harness.db, async (tx) => {
    const [{ claim }] = await tx.query<{ claim: { ip: string } }>(
      `select public.register_nebula_device(
         $1, $2, $3, $4, $5, false, null, now()) as claim`,
      [
        other.projectId,
        other.deviceId,
        owner.id,
        other.deviceName,
        parseDevicePublicKey(other.publicKey),
      ],
    );
    await tx.query(
      `insert into public.nebula_certificates (fingerprint, project_id,
         device_id, ca_fingerprint, ip, name, groups, public_key, not_before,
         not_after)
       select $2, project_id, $3, ca_fingerprint, $4::inet, name, groups,
         public_key, not_before + interval '1 second',
         not_after + interval '1 second'
       from public.nebula_certificates where fingerprint = $1`,
      [first, newFingerprint, other.deviceId, claim.ip],
    );
  });
  await heldRegistration.ready;

  const revoking = revoke(harness, owner, {
    projectId: project.id,
    fingerprint: first,
    reason: "laptop stolen",
  });
  await waitForLockWait(harness.db, "revoke_nebula_certificate");
  await heldRegistration.commit();
  const result = await revoking;

  assert.ok(result.revokedFingerprints.includes(newFingerprint));
  assert.equal(
    (await revocationOf(harness, newFingerprint)).revocation_reason,
    "laptop stolen",
  );
  assert.equal(await unrevokedRevokedKeyCount(harness, project.id), 0);
});
