/**
 * Allocation while other transactions hold rows they may still roll back,
 * with two or three connections on real PostgreSQL. Each held transaction
 * stays open until the test commits or rolls it back, so the order of
 * events is fixed.
 */
import assert from "node:assert/strict";
import { allocateIp } from "../../shared/allocator/mod.ts";
import { sqlState } from "../../shared/db/errors.ts";
import type { Db } from "../../shared/db/port.ts";
import { PoolExhaustedError } from "../../shared/errors.ts";
import { holdTransaction, waitForLockWait } from "../support/locks.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import {
  createDevices,
  createPoolProject,
  type PoolProject,
} from "./fixtures.ts";

const LIGHTHOUSES = ["10.44.0.1", "10.44.0.2", "10.44.0.3"];

/**
 * Calls register_nebula_device for a new lighthouse device with a random key
 * and returns its address. A lock wait over 5 s fails instead of hanging.
 */
async function registerLighthouse(
  tx: Db,
  project: PoolProject,
): Promise<string> {
  await tx.query("set local lock_timeout = '5s'");
  const [row] = await tx.query<{ ip: string }>(
    `select public.register_nebula_device(
       $1, gen_random_uuid(), $2, 'lighthouse', $3::bytea, true, null, now())
       ->> 'ip' as ip`,
    [
      project.projectId,
      project.ownerId,
      crypto.getRandomValues(new Uint8Array(32)),
    ],
  );
  return row.ip;
}

/** Calls allocate_nebula_ip in `tx`; a lock wait over 5 s fails instead of hanging. */
async function allocate(tx: Db, project: PoolProject, deviceId: string) {
  await tx.query("set local lock_timeout = '5s'");
  return (await allocateIp(tx, {
    projectId: project.projectId,
    deviceId,
    allocatedBy: null,
  })).ip;
}

/**
 * Sets up a /29 with one lighthouse (five pool addresses), allocates four,
 * and holds the fifth in an open transaction.
 */
async function holdLastFreeAddress(database: TestDatabase) {
  const project = await createPoolProject(database.db, "10.45.0.0/29", [
    "10.45.0.1",
  ]);
  const devices = await createDevices(database.db, project, 6);
  for (const deviceId of devices.slice(0, 4)) {
    await database.db.transaction((tx) => allocate(tx, project, deviceId));
  }
  const holder = holdTransaction(
    database.connect({ max: 1 }),
    (tx) => allocate(tx, project, devices[4]),
  );
  assert.equal(await holder.ready, "10.45.0.6");

  const waiting = database.connect({ max: 1 }).transaction((tx) =>
    allocate(tx, project, devices[5])
  );
  // Settled either way, so an early rejection is read below, not reported as unhandled.
  const outcome = waiting.then((ip) => ip, (error: unknown) => error);
  await waitForLockWait(database.db, "allocate_nebula_ip");
  return { holder, outcome };
}

Deno.test("allocate_nebula_ip() takes a held address that rolls back", async () => {
  await using database = await createTestDatabase();
  const { holder, outcome } = await holdLastFreeAddress(database);

  await holder.rollBack();

  assert.equal(await outcome, "10.45.0.6");
});

Deno.test("allocate_nebula_ip() raises VS001 once the held address commits", async () => {
  await using database = await createTestDatabase();
  const { holder, outcome } = await holdLastFreeAddress(database);

  await holder.commit();

  const error = await outcome;
  assert.ok(error instanceof PoolExhaustedError, String(error));
  const pool = error.extensions.pool as Record<string, number>;
  assert.equal(pool.free, 0);
  assert.equal(pool.allocated, 5);
});

Deno.test("register_nebula_device() passes a lighthouse being taken", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(
    database.db,
    "10.44.0.0/24",
    LIGHTHOUSES,
  );
  const holder = holdTransaction(
    database.connect({ max: 1 }),
    (tx) => registerLighthouse(tx, project),
  );
  assert.equal(await holder.ready, "10.44.0.1");

  const second = await database.connect({ max: 1 }).transaction((tx) =>
    registerLighthouse(tx, project)
  );

  assert.equal(second, "10.44.0.2");
  await holder.commit();
});

Deno.test("register_nebula_device() waits for a lighthouse that rolls back", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(
    database.db,
    "10.44.0.0/24",
    LIGHTHOUSES.slice(0, 2),
  );
  const first = holdTransaction(
    database.connect({ max: 1 }),
    (tx) => registerLighthouse(tx, project),
  );
  assert.equal(await first.ready, "10.44.0.1");
  const second = holdTransaction(
    database.connect({ max: 1 }),
    (tx) => registerLighthouse(tx, project),
  );
  assert.equal(await second.ready, "10.44.0.2");

  const third = database.connect({ max: 1 }).transaction((tx) =>
    registerLighthouse(tx, project)
  );
  await waitForLockWait(database.db, "register_nebula_device");
  await first.rollBack();

  assert.equal(await third, "10.44.0.1");
  await second.commit();
});

Deno.test("register_nebula_device() raises VS206 once held lighthouses commit", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(
    database.db,
    "10.44.0.0/24",
    LIGHTHOUSES.slice(0, 2),
  );
  const first = holdTransaction(
    database.connect({ max: 1 }),
    (tx) => registerLighthouse(tx, project),
  );
  const second = holdTransaction(
    database.connect({ max: 1 }),
    (tx) => registerLighthouse(tx, project),
  );
  await Promise.all([first.ready, second.ready]);

  const third = database.connect({ max: 1 }).transaction((tx) =>
    registerLighthouse(tx, project)
  );
  const outcome = third.then(() => "admitted", (error) => error);
  await waitForLockWait(database.db, "register_nebula_device");
  await first.commit();
  await second.commit();

  assert.equal(sqlState(await outcome), "VS206");
});
