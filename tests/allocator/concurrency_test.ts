/**
 * Concurrency on real PostgreSQL: many pools stand in for many Edge Function
 * instances. Every pool uses the production client settings (postgres.js
 * with `prepare: false`, as behind Supabase's transaction pooler).
 */
import assert from "node:assert/strict";
import type { Db } from "../../shared/db/port.ts";
import { allocateIp } from "../../shared/allocator/mod.ts";
import { PoolExhaustedError } from "../../shared/errors.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { createDevices, createPoolProject } from "./fixtures.ts";

/** Opens `instances` pools of `connectionsEach` connections. */
function openInstances(
  database: TestDatabase,
  instances: number,
  connectionsEach: number,
): Db[] {
  return Array.from(
    { length: instances },
    () => database.connect({ max: connectionsEach }),
  );
}

async function allocateAll(pools: Db[], projectId: string, devices: string[]) {
  return await Promise.allSettled(
    devices.map((deviceId, index) =>
      allocateIp(pools[index % pools.length], {
        projectId,
        deviceId,
        allocatedBy: null,
      })
    ),
  );
}

Deno.test("allocate_nebula_ip() gives 1000 racing devices distinct addresses", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.40.0.0/22");
  const devices = await createDevices(database.db, project, 1000);
  const pools = openInstances(database, 8, 5);

  const results = await allocateAll(pools, project.projectId, devices);

  const rejected = results.filter((result) => result.status === "rejected");
  assert.deepEqual(rejected, [], "no allocation fails");
  const ips = results.map((result) =>
    (result as PromiseFulfilledResult<{ ip: string }>).value.ip
  );
  assert.equal(new Set(ips).size, 1000);
  const [history] = await database.db.query<{ count: string }>(
    "select count(*) as count from public.nebula_ip_allocations where project_id = $1",
    [project.projectId],
  );
  assert.equal(Number(history.count), 1000);
});

Deno.test("allocate_nebula_ip() admits exactly 254 of 1000 on a /24", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.41.0.0/24");
  const devices = await createDevices(database.db, project, 1000);
  const pools = openInstances(database, 8, 5);

  const results = await allocateAll(pools, project.projectId, devices);

  const admitted = results.filter((result) => result.status === "fulfilled");
  const refused = results.filter((result) => result.status === "rejected");
  assert.equal(admitted.length, 254);
  assert.equal(refused.length, 746);
  for (const result of refused) {
    assert.ok(
      (result as PromiseRejectedResult).reason instanceof PoolExhaustedError,
    );
  }
  const ips = admitted.map((result) =>
    (result as PromiseFulfilledResult<{ ip: string }>).value.ip
  );
  assert.equal(new Set(ips).size, 254);

  const [state] = await database.db.query<Record<string, string>>(
    `select
       (select count(*) from public.nebula_ip_pool where project_id = $1 and device_id is not null) as pool_rows,
       (select count(*) from public.user_devices where project_id = $1 and nebula_ip is not null) as device_rows,
       (select count(*) from public.nebula_ip_allocations where project_id = $1) as history_rows`,
    [project.projectId],
  );
  assert.equal(Number(state.pool_rows), 254, "pool rows");
  assert.equal(
    Number(state.device_rows),
    254,
    "device rows: no half allocation",
  );
  assert.equal(Number(state.history_rows), 254, "history rows");
});

Deno.test("allocate_nebula_ip() returns one address to racing calls for one device", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.42.0.0/24");
  const [device] = await createDevices(database.db, project, 1);
  const pools = openInstances(database, 4, 4);

  const results = await Promise.all(
    Array.from(
      { length: 16 },
      (_, index) =>
        allocateIp(pools[index % pools.length], {
          projectId: project.projectId,
          deviceId: device,
          allocatedBy: null,
        }),
    ),
  );

  assert.equal(new Set(results.map((result) => result.ip)).size, 1);
  const [history] = await database.db.query<{ count: string }>(
    "select count(*) as count from public.nebula_ip_allocations where device_id = $1",
    [device],
  );
  assert.equal(Number(history.count), 1);
});

Deno.test("allocate_nebula_ip() splits a /29 among six racing joins", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.43.0.0/29", [
    "10.43.0.1",
  ]);
  const devices = await createDevices(database.db, project, 6);
  const pools = openInstances(database, 6, 1);

  const results = await allocateAll(pools, project.projectId, devices);

  const ips = results.flatMap((result) =>
    result.status === "fulfilled" ? [result.value.ip] : []
  );
  const refused = results.filter((result) => result.status === "rejected");
  assert.equal(
    new Set(ips).size,
    5,
    "five distinct addresses besides the lighthouse",
  );
  assert.equal(refused.length, 1);
  assert.ok(
    (refused[0] as PromiseRejectedResult).reason instanceof PoolExhaustedError,
  );
  assert.ok(
    !ips.includes("10.43.0.1"),
    "the lighthouse address is never handed out",
  );
});
