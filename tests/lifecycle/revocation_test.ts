import assert from "node:assert/strict";
import { createTestDatabase } from "../support/db.ts";
import { ProblemError } from "../../shared/errors.ts";
import type { AuditContext } from "../../shared/audit/mod.ts";
import {
  configEtag,
  etagMatches,
  getBlocklist,
  loadConfigInputs,
  revokeCertificate,
  revokeDeviceCertificates,
} from "../../shared/lifecycle/mod.ts";
import { createProject, enrollDevice } from "./fixtures.ts";

const ADMIN: AuditContext = {
  actorId: null,
  actorType: "service",
  requestId: "revoke-test",
};
const GENERATOR = "nebula-yml-1";

Deno.test("revokeCertificate() lists the fingerprint until it expires", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const device = await enrollDevice(db, project);
  const now = new Date();

  const first = await revokeCertificate(
    db,
    {
      projectId: project.projectId,
      fingerprint: device.fingerprint.toUpperCase(),
      reason: "stolen",
    },
    ADMIN,
    now,
  );
  const again = await revokeCertificate(
    db,
    {
      projectId: project.projectId,
      fingerprint: device.fingerprint,
      reason: "other reason",
    },
    ADMIN,
    new Date(now.getTime() + 5000),
  );

  assert.equal(first.newlyRevoked, true);
  assert.equal(first.fingerprint, device.fingerprint);
  assert.equal(again.newlyRevoked, false);
  assert.equal(again.revokedAt.getTime(), first.revokedAt.getTime());
  assert.deepEqual(await getBlocklist(db, project.projectId, now), [
    device.fingerprint,
  ]);
  assert.deepEqual(
    await getBlocklist(db, project.projectId, device.notAfter),
    [],
  );
  const audit = await db.query(
    "select 1 from public.audit_log where action = 'certificate.revoke'",
  );
  assert.equal(audit.length, 1);
});

Deno.test("revokeCertificate() rejects unknown and malformed fingerprints", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const other = await createProject(db, { cidr: "10.43.0.0/24" });
  const foreign = await enrollDevice(db, other);
  const cases: [string, string][] = [
    ["a".repeat(64), "not_found"],
    [foreign.fingerprint, "not_found"],
    ["not-a-fingerprint", "invalid_input"],
  ];

  for (const [fingerprint, code] of cases) {
    await assert.rejects(
      () =>
        revokeCertificate(db, {
          projectId: project.projectId,
          fingerprint,
          reason: "x",
        }, ADMIN),
      (error) => error instanceof ProblemError && error.code === code,
      fingerprint,
    );
  }
  assert.deepEqual(await getBlocklist(db, other.projectId), []);
});

Deno.test("revokeDeviceCertificates() blocks every valid certificate of the device", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const device = await enrollDevice(db, project);
  const bystander = await enrollDevice(db, project);

  const revoked = await revokeDeviceCertificates(db, {
    projectId: project.projectId,
    deviceId: device.deviceId,
    reason: "admin revoke",
  }, ADMIN);

  assert.deepEqual(revoked, [device.fingerprint]);
  const blocklist = await getBlocklist(db, project.projectId);
  assert.deepEqual(blocklist, [device.fingerprint]);
  assert.ok(!blocklist.includes(bystander.fingerprint));
});

Deno.test("configEtag() changes exactly when the config inputs change", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, {
    cidr: "10.42.0.0/24",
    lighthouseIp: "10.42.0.1",
  });
  const device = await enrollDevice(db, project);
  const peer = await enrollDevice(db, project);
  const etagNow = async () =>
    await configEtag(
      await loadConfigInputs(db, project.projectId, device.deviceId, GENERATOR),
    );

  const initial = await etagNow();
  const unchanged = await etagNow();
  await revokeCertificate(db, {
    projectId: project.projectId,
    fingerprint: peer.fingerprint,
    reason: "left the team",
  }, ADMIN);
  const afterRevoke = await etagNow();
  await db.query(
    "update public.nebula_lighthouses set endpoints = array['198.51.100.7:4242'] where project_id = $1",
    [project.projectId],
  );
  const afterMove = await etagNow();
  const otherGenerator = await configEtag(
    await loadConfigInputs(
      db,
      project.projectId,
      device.deviceId,
      "nebula-yml-2",
    ),
  );

  assert.match(initial, /^"[A-Za-z0-9_-]{43}"$/);
  assert.equal(unchanged, initial);
  assert.notEqual(afterRevoke, initial);
  assert.notEqual(afterMove, afterRevoke);
  assert.notEqual(otherGenerator, afterMove);
  const inputs = await loadConfigInputs(
    db,
    project.projectId,
    device.deviceId,
    GENERATOR,
  );
  assert.deepEqual(inputs.blocklist, [peer.fingerprint]);
  assert.deepEqual(inputs.lighthouses, [
    { ip: "10.42.0.1", endpoints: ["198.51.100.7:4242"], name: "lh1" },
  ]);
  assert.equal(inputs.certificateFingerprint, device.fingerprint);
});

Deno.test("loadConfigInputs() rejects a device without address", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });

  await assert.rejects(
    () =>
      loadConfigInputs(db, project.projectId, crypto.randomUUID(), GENERATOR),
    (error) =>
      error instanceof ProblemError && error.code === "device_not_found",
  );
});

Deno.test("etagMatches() uses the weak comparison of If-None-Match", () => {
  const etag = '"abc"';

  assert.equal(etagMatches('"abc"', etag), true);
  assert.equal(etagMatches('W/"abc"', etag), true);
  assert.equal(etagMatches('"x", "abc"', etag), true);
  assert.equal(etagMatches("*", etag), true);
  assert.equal(etagMatches('"abd"', etag), false);
  assert.equal(etagMatches("abc", etag), false);
  assert.equal(etagMatches(null, etag), false);
  assert.equal(etagMatches("", etag), false);
});
