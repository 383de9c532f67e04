/**
 * The constraints must stop duplicates on their own, even if allocation code
 * is wrong: these tests write rows directly and bypass the SQL functions.
 */
import assert from "node:assert/strict";
import { sqlState } from "../../shared/db/errors.ts";
import { createTestDatabase } from "../support/db.ts";
import { createDevices, createPoolProject } from "./fixtures.ts";

const UNIQUE_VIOLATION = "23505";

Deno.test("nebula_ip_pool rejects one device on two addresses", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.50.0.0/24");
  const [device] = await createDevices(database.db, project, 1);

  const attempt = database.db.query(
    `update public.nebula_ip_pool set device_id = $2, allocated_at = now()
     where project_id = $1 and ip in ('10.50.0.1/24', '10.50.0.2/24')`,
    [project.projectId, device],
  );

  await assert.rejects(
    attempt,
    (error) => sqlState(error) === UNIQUE_VIOLATION,
  );
});

Deno.test("user_devices rejects two devices on one address", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.51.0.0/24");
  const devices = await createDevices(database.db, project, 2);

  const attempt = database.db.query(
    "update public.user_devices set nebula_ip = '10.51.0.9/24' where project_id = $1 and id = any($2::uuid[])",
    [project.projectId, devices],
  );

  await assert.rejects(
    attempt,
    (error) => sqlState(error) === UNIQUE_VIOLATION,
  );
});

Deno.test("nebula_ip_pool rejects a duplicate address row", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.52.0.0/24");

  const attempt = database.db.query(
    "insert into public.nebula_ip_pool (project_id, ip) values ($1, '10.52.0.7/24')",
    [project.projectId],
  );

  await assert.rejects(
    attempt,
    (error) => sqlState(error) === UNIQUE_VIOLATION,
  );
});

Deno.test("nebula_ip_allocations rejects two open rows per device", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.53.0.0/24");
  const [device] = await createDevices(database.db, project, 1);
  const insert = () =>
    database.db.query(
      `insert into public.nebula_ip_allocations (project_id, ip, device_id, allocated_at)
       values ($1, '10.53.0.1/24', $2, now())`,
      [project.projectId, device],
    );

  await insert();

  await assert.rejects(
    insert(),
    (error) => sqlState(error) === UNIQUE_VIOLATION,
  );
});

Deno.test("populate_nebula_ip_pool() fills a /16 in one statement", async () => {
  await using database = await createTestDatabase();
  const project = await createPoolProject(database.db, "10.54.0.0/30");

  const started = performance.now();
  const [row] = await database.db.query<{ added: number }>(
    "select public.populate_nebula_ip_pool($1, '10.60.0.0/16'::cidr, '{}') as added",
    [project.projectId],
  );
  const elapsed = performance.now() - started;

  assert.equal(Number(row.added), 65_534);
  console.log(`populated a /16 (65534 rows) in ${elapsed.toFixed(0)} ms`);
});
