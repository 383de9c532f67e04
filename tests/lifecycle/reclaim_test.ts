import assert from "node:assert/strict";
import { createTestDatabase } from "../support/db.ts";
import type { Db } from "../../shared/db/port.ts";
import { PoolExhaustedError, ProblemError } from "../../shared/errors.ts";
import { verifyAuditChain } from "../../shared/audit/mod.ts";
import {
  getBlocklist,
  reclaimIdleDevices,
  reclaimSecretMatches,
  recordHeartbeat,
} from "../../shared/lifecycle/mod.ts";
import { createProject, enrollDevice } from "./fixtures.ts";

const DAY = 86400_000;

function later(base: Date, milliseconds: number): Date {
  return new Date(base.getTime() + milliseconds);
}

async function addDevice(
  db: Db,
  projectId: string,
  ownerId: string,
  now: Date,
) {
  const deviceId = crypto.randomUUID();
  await db.query(
    `insert into public.user_devices (project_id, id, owner_id, name, created_at)
     values ($1, $2, $3, 'newcomer', $4)`,
    [projectId, deviceId, ownerId, now],
  );
  return deviceId;
}

async function allocate(
  db: Db,
  projectId: string,
  deviceId: string,
  ownerId: string,
  now: Date,
) {
  const [row] = await db.query<{ ip: string }>(
    "select host(public.allocate_nebula_ip($1, $2, $3, $4)) as ip",
    [projectId, deviceId, ownerId, now],
  );
  return row.ip;
}

Deno.test("reclaim_idle_devices() releases an idle device and quarantines its address", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  // A /30 with the lighthouse on .1 leaves exactly one pool address, .2.
  const project = await createProject(db, {
    cidr: "10.42.0.0/30",
    lighthouseIp: "10.42.0.1",
    deviceIdleTimeout: "7 days",
  });
  const start = new Date();
  const device = await enrollDevice(db, project, { now: start });

  const early = await reclaimIdleDevices(db, later(start, 6 * DAY));
  const reclaimTime = later(start, 8 * DAY);
  const reclaimed = await reclaimIdleDevices(db, reclaimTime);

  assert.deepEqual(early, []);
  assert.equal(reclaimed.length, 1);
  assert.equal(reclaimed[0].deviceId, device.deviceId);
  assert.equal(reclaimed[0].ip, "10.42.0.2/30");
  assert.equal(
    reclaimed[0].quarantinedUntil?.getTime(),
    device.notAfter.getTime(),
  );
  assert.deepEqual(reclaimed[0].revokedFingerprints, [device.fingerprint]);
  assert.deepEqual(await getBlocklist(db, project.projectId, reclaimTime), [
    device.fingerprint,
  ]);

  const newcomer = await addDevice(
    db,
    project.projectId,
    project.ownerId,
    reclaimTime,
  );
  const beforeExpiry = later(device.notAfter, -1000);
  await assert.rejects(
    () =>
      allocate(db, project.projectId, newcomer, project.ownerId, beforeExpiry),
    (error) =>
      error instanceof PoolExhaustedError && error.code === "pool_exhausted",
  );
  const ip = await allocate(
    db,
    project.projectId,
    newcomer,
    project.ownerId,
    device.notAfter,
  );
  assert.equal(ip, "10.42.0.2");
});

Deno.test("reclaim_idle_devices() never reclaims a lighthouse", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, {
    cidr: "10.42.0.0/24",
    lighthouseIp: "10.42.0.1",
    deviceIdleTimeout: "1 day",
  });
  const start = new Date();
  const lighthouse = await enrollDevice(db, project, {
    lighthouse: "10.42.0.1",
    now: start,
  });

  const reclaimed = await reclaimIdleDevices(db, later(start, 3650 * DAY));

  assert.deepEqual(reclaimed, []);
  const [row] = await db.query<{ ip: string }>(
    "select host(nebula_ip) as ip from public.user_devices where id = $1",
    [lighthouse.deviceId],
  );
  assert.equal(row.ip, "10.42.0.1");
  assert.deepEqual(await getBlocklist(db, project.projectId, start), []);
});

Deno.test("reclaim_idle_devices() spares devices with a recent heartbeat", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, {
    cidr: "10.42.0.0/24",
    deviceIdleTimeout: "7 days",
  });
  const start = new Date();
  const alive = await enrollDevice(db, project, { now: start });
  const idle = await enrollDevice(db, project, { now: start });
  await recordHeartbeat(
    db,
    project.projectId,
    alive.deviceId,
    later(start, 5 * DAY),
  );

  const reclaimed = await reclaimIdleDevices(db, later(start, 10 * DAY));

  assert.deepEqual(reclaimed.map((entry) => entry.deviceId), [idle.deviceId]);
  const audit = await db.query<
    { action: string; target_id: string; actor_type: string }
  >(
    "select action, target_id, actor_type from public.audit_log where project_id = $1",
    [project.projectId],
  );
  assert.equal(audit.length, 1);
  assert.equal(audit[0].action, "device.reclaim");
  assert.equal(audit[0].target_id, idle.deviceId);
  assert.equal(audit[0].actor_type, "system");
  assert.equal((await verifyAuditChain(db, project.projectId)).ok, true);
});

Deno.test("reclaim_idle_devices() does nothing when the project turns reclaim off", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, {
    cidr: "10.42.0.0/24",
    deviceIdleTimeout: null,
  });
  const start = new Date();
  await enrollDevice(db, project, { now: start });

  assert.deepEqual(await reclaimIdleDevices(db, later(start, 3650 * DAY)), []);
});

Deno.test("recordHeartbeat() never moves last seen back", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const project = await createProject(db, { cidr: "10.42.0.0/24" });
  const device = await enrollDevice(db, project);
  const t1 = new Date("2027-05-01T10:00:00Z");

  const first = await recordHeartbeat(
    db,
    project.projectId,
    device.deviceId,
    t1,
  );
  const late = await recordHeartbeat(
    db,
    project.projectId,
    device.deviceId,
    later(t1, -60_000),
  );

  assert.equal(first.getTime(), t1.getTime());
  assert.equal(late.getTime(), t1.getTime());
  await assert.rejects(
    () => recordHeartbeat(db, project.projectId, crypto.randomUUID(), t1),
    (error) =>
      error instanceof ProblemError && error.code === "device_not_found",
  );
});

Deno.test("reclaimSecretMatches() accepts only the configured secret", async () => {
  assert.equal(
    await reclaimSecretMatches("s3cret-value", "s3cret-value"),
    true,
  );
  assert.equal(
    await reclaimSecretMatches("s3cret-valuE", "s3cret-value"),
    false,
  );
  assert.equal(await reclaimSecretMatches("", ""), false);
  assert.equal(await reclaimSecretMatches("anything", undefined), false);
  assert.equal(await reclaimSecretMatches(null, "s3cret-value"), false);
});

Deno.test("schedule migration skips pg_cron where it is missing", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const [available] = await db.query<{ available: boolean }>(
    "select exists (select 1 from pg_available_extensions where name = 'pg_cron') as available",
  );
  const [applied] = await db.query<{ count: string }>(
    `select count(*)::text as count from supabase_migrations.schema_migrations
     where version = '20261205000300'`,
  );
  const [cron] = await db.query<{ schema: string | null }>(
    "select to_regnamespace('cron')::text as schema",
  );

  assert.equal(applied.count, "1");
  // NOTE: the test machine's PostgreSQL has no pg_cron, so only the skip path runs here.
  if (!available.available) assert.equal(cron.schema, null);
});
