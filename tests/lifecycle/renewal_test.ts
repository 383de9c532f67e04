import assert from "node:assert/strict";
import { createTestDatabase } from "../support/db.ts";
import type { Db } from "../../shared/db/port.ts";
import { ProblemError } from "../../shared/errors.ts";
import type { AuditContext } from "../../shared/audit/mod.ts";
import {
  getBlocklist,
  hostCertificateValidity,
  renewDeviceCertificate,
  revokeCertificate,
} from "../../shared/lifecycle/mod.ts";
import {
  createKey,
  createProject,
  enrollDevice,
  printCertificate,
} from "./fixtures.ts";

function auditAs(userId: string): AuditContext {
  return {
    actorId: userId,
    actorType: "user",
    clientIp: "192.0.2.7",
    requestId: "renew-test",
  };
}

async function certificateCount(db: Db, deviceId: string): Promise<number> {
  const rows = await db.query(
    "select 1 from public.nebula_certificates where device_id = $1",
    [deviceId],
  );
  return rows.length;
}

async function printPem(pem: string) {
  const path = await Deno.makeTempFile({ suffix: ".crt" });
  try {
    await Deno.writeTextFile(path, pem);
    return await printCertificate(path);
  } finally {
    await Deno.remove(path);
  }
}

async function rejectsWithCode(promise: Promise<unknown>, code: string) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof ProblemError, String(error));
    assert.equal(error.code, code);
    return true;
  });
}

Deno.test("renewDeviceCertificate() keeps the ip and the key", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const device = await enrollDevice(db, project);

  const renewed = await renewDeviceCertificate(db, project.sign, {
    projectId: project.projectId,
    deviceId: device.deviceId,
    actorId: project.ownerId,
  }, auditAs(project.ownerId));

  assert.equal(renewed.ip, device.ip);
  assert.equal(renewed.prefixLength, 24);
  assert.notEqual(renewed.certificate.fingerprint, device.fingerprint);
  assert.equal(renewed.publicKeyChanged, false);
  assert.deepEqual(renewed.revokedFingerprints, []);
  assert.deepEqual(renewed.caFingerprints, [project.ca.fingerprint]);
  const printed = await printPem(renewed.certificate.pem);
  assert.deepEqual(printed.details.ips, ["10.42.0.1/24"]);
  assert.equal(printed.details.publicKey, toHex(device.key.raw));
  assert.deepEqual(await getBlocklist(db, project.projectId), []);
  const audit = await db.query<
    { action: string; outcome: string; actor_id: string }
  >(
    "select action, outcome, actor_id from public.audit_log where project_id = $1",
    [project.projectId],
  );
  assert.equal(audit.length, 1);
  assert.equal(audit[0].action, "device.renew");
  assert.equal(audit[0].outcome, "allowed");
  assert.equal(audit[0].actor_id, project.ownerId);
});

Deno.test("renewDeviceCertificate() with a new key revokes the old certificate", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const device = await enrollDevice(db, project);
  const newKey = await createKey();

  const renewed = await renewDeviceCertificate(db, project.sign, {
    projectId: project.projectId,
    deviceId: device.deviceId,
    actorId: project.ownerId,
    publicKey: newKey.raw,
  }, auditAs(project.ownerId));

  assert.equal(renewed.ip, device.ip);
  assert.equal(renewed.publicKeyChanged, true);
  assert.deepEqual(renewed.revokedFingerprints, [device.fingerprint]);
  const printed = await printPem(renewed.certificate.pem);
  assert.equal(printed.details.publicKey, toHex(newKey.raw));
  assert.deepEqual(await getBlocklist(db, project.projectId), [
    device.fingerprint,
  ]);
  const justBeforeExpiry = new Date(device.notAfter.getTime() - 1000);
  assert.deepEqual(
    await getBlocklist(db, project.projectId, justBeforeExpiry),
    [
      device.fingerprint,
    ],
  );
  assert.deepEqual(
    await getBlocklist(db, project.projectId, device.notAfter),
    [],
  );
  const [stored] = await db.query<{ key: string }>(
    "select encode(public_key, 'hex') as key from public.user_devices where id = $1",
    [device.deviceId],
  );
  assert.equal(stored.key, toHex(newKey.raw));
});

Deno.test("renewDeviceCertificate() caps the lifetime at the CA's NotAfter", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, {
    cidr: "10.42.0.0/24",
    caDurationHours: 1000,
    hostCertLifetime: "90 days",
  });
  const device = await enrollDevice(db, project);

  const renewed = await renewDeviceCertificate(db, project.sign, {
    projectId: project.projectId,
    deviceId: device.deviceId,
    actorId: project.ownerId,
  }, auditAs(project.ownerId));

  const notAfter = renewed.certificate.notAfter.getTime();
  assert.ok(notAfter <= project.ca.notAfter.getTime(), "never outlives the CA");
  assert.ok(
    notAfter >= project.ca.notAfter.getTime() - 2000,
    "lasts as long as the CA allows",
  );
});

Deno.test("renewDeviceCertificate() rejects bad requests and changes nothing", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const device = await enrollDevice(db, project);
  const other = await enrollDevice(db, project);
  const [stranger] = await db.query<{ id: string }>(
    "insert into auth.users (email) values ('stranger@example.test') returning id",
  );
  const request = {
    projectId: project.projectId,
    deviceId: device.deviceId,
    actorId: project.ownerId,
  };
  const renew = (changes: Record<string, unknown>) =>
    renewDeviceCertificate(
      db,
      project.sign,
      { ...request, ...changes },
      auditAs(project.ownerId),
    );

  await rejectsWithCode(
    renew({ actorId: stranger.id }),
    "device_owned_by_other_user",
  );
  await rejectsWithCode(
    renew({ deviceId: crypto.randomUUID() }),
    "device_not_found",
  );
  await rejectsWithCode(
    renew({ publicKey: new Uint8Array(31) }),
    "invalid_public_key",
  );
  await rejectsWithCode(
    renew({ publicKey: other.key.raw }),
    "public_key_in_use",
  );

  assert.equal(await certificateCount(db, device.deviceId), 1);
  assert.deepEqual(await getBlocklist(db, project.projectId), []);
  const audit = await db.query("select 1 from public.audit_log");
  assert.equal(audit.length, 0);
});

Deno.test("renewDeviceCertificate() refuses a revoked device", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const device = await enrollDevice(db, project);
  await revokeCertificate(db, {
    projectId: project.projectId,
    fingerprint: device.fingerprint,
    reason: "lost laptop",
  }, auditAs(project.ownerId));

  await rejectsWithCode(
    renewDeviceCertificate(db, project.sign, {
      projectId: project.projectId,
      deviceId: device.deviceId,
      actorId: project.ownerId,
    }, auditAs(project.ownerId)),
    "certificate_revoked",
  );
  assert.equal(await certificateCount(db, device.deviceId), 1);
});

Deno.test("renewDeviceCertificate() refuses a released device", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const device = await enrollDevice(db, project);
  await db.query("select * from public.release_nebula_ip_by_device($1, $2)", [
    project.projectId,
    device.deviceId,
  ]);

  await rejectsWithCode(
    renewDeviceCertificate(db, project.sign, {
      projectId: project.projectId,
      deviceId: device.deviceId,
      actorId: project.ownerId,
    }, auditAs(project.ownerId)),
    "device_not_found",
  );
});

Deno.test("hostCertificateValidity() starts now and ends at the earlier bound", () => {
  const ca = {
    notBefore: new Date("2027-01-01T00:00:00Z"),
    notAfter: new Date("2027-01-11T00:00:00Z"),
  };
  const now = new Date("2027-01-05T10:20:30.900Z");

  const short = hostCertificateValidity(now, 3600, ca);
  const long = hostCertificateValidity(now, 30 * 86400, ca);
  const beforeCa = hostCertificateValidity(
    new Date("2026-12-31T23:59:59Z"),
    3600,
    ca,
  );
  const afterCa = hostCertificateValidity(
    new Date("2027-01-11T00:00:00Z"),
    3600,
    ca,
  );

  assert.equal(short?.notBefore.toISOString(), "2027-01-05T10:20:30.000Z");
  assert.equal(short?.notAfter.toISOString(), "2027-01-05T11:20:30.000Z");
  assert.equal(long?.notAfter.toISOString(), "2027-01-11T00:00:00.000Z");
  assert.equal(beforeCa, null);
  assert.equal(afterCa, null);
  assert.equal(hostCertificateValidity(now, 0, ca), null);
});

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(
    "",
  );
}
