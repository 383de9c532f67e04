/**
 * Row level security as PostgREST and the dashboard see it: each query runs
 * as the `anon` or `authenticated` role with the token's claims set the way
 * Supabase sets them.
 */
import assert from "node:assert/strict";
import type { Db } from "../../shared/db/port.ts";
import { sqlState } from "../../shared/db/errors.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  createDevices,
  createPoolProject,
  createUser,
} from "../allocator/fixtures.ts";

const INSUFFICIENT_PRIVILEGE = "42501";

/** Runs `sql` as `role` with the claims of user `sub`, then rolls back. */
async function queryAs(
  db: Db,
  role: "anon" | "authenticated",
  sub: string | null,
  sql: string,
  params: unknown[] = [],
): Promise<Record<string, unknown>[]> {
  let rows: Record<string, unknown>[] = [];
  const rollback = new Error("rollback");
  try {
    await db.transaction(async (tx) => {
      const claims = JSON.stringify(sub ? { sub, role } : { role });
      await tx.query("select set_config('request.jwt.claims', $1, true)", [
        claims,
      ]);
      await tx.query(`set local role ${role}`);
      rows = await tx.query(sql, params);
      throw rollback;
    });
  } catch (error) {
    if (error !== rollback) throw error;
  }
  return rows;
}

async function setUp(db: Db) {
  const mine = await createPoolProject(db, "10.70.0.0/24");
  const theirs = await createPoolProject(db, "10.71.0.0/24");
  const member = await createUser(db);
  await db.query(
    "insert into public.project_members (project_id, user_id, role) values ($1, $2, 'member')",
    [mine.projectId, member],
  );
  await createDevices(db, mine, 2);
  await createDevices(db, theirs, 2);
  return { mine, theirs, member };
}

Deno.test("RLS lets a member read only their project", async () => {
  await using database = await createTestDatabase();
  const { mine, member } = await setUp(database.db);

  const projects = await queryAs(
    database.db,
    "authenticated",
    member,
    "select id from public.projects",
  );
  const devices = await queryAs(
    database.db,
    "authenticated",
    member,
    "select project_id from public.user_devices",
  );
  const pool = await queryAs(
    database.db,
    "authenticated",
    member,
    "select distinct project_id from public.nebula_ip_pool",
  );

  assert.deepEqual(projects.map((row) => row.id), [mine.projectId]);
  assert.equal(devices.length, 2);
  assert.ok(devices.every((row) => row.project_id === mine.projectId));
  assert.deepEqual(pool.map((row) => row.project_id), [mine.projectId]);
});

Deno.test("RLS shows anon nothing", async () => {
  await using database = await createTestDatabase();
  await setUp(database.db);
  const tables = [
    "projects",
    "project_members",
    "nebula_lighthouses",
    "user_devices",
    "nebula_ip_pool",
    "nebula_ip_allocations",
    "nebula_cas",
    "nebula_certificates",
  ];

  for (const table of tables) {
    await assert.rejects(
      queryAs(database.db, "anon", null, `select * from public.${table}`),
      (error) => sqlState(error) === INSUFFICIENT_PRIVILEGE,
      table,
    );
  }
});

Deno.test("RLS keeps authenticated users from writing the pool", async () => {
  await using database = await createTestDatabase();
  const { mine } = await setUp(database.db);

  const update = () =>
    queryAs(
      database.db,
      "authenticated",
      mine.ownerId,
      "update public.nebula_ip_pool set quarantined_until = now() where project_id = $1",
      [mine.projectId],
    );
  const insert = () =>
    queryAs(
      database.db,
      "authenticated",
      mine.ownerId,
      "insert into public.nebula_ip_pool (project_id, ip) values ($1, '10.70.1.1/24')",
      [mine.projectId],
    );
  const allocate = () =>
    queryAs(
      database.db,
      "authenticated",
      mine.ownerId,
      "select public.allocate_nebula_ip($1, gen_random_uuid(), null)",
      [mine.projectId],
    );

  await assert.rejects(
    update,
    (error) => sqlState(error) === INSUFFICIENT_PRIVILEGE,
  );
  await assert.rejects(
    insert,
    (error) => sqlState(error) === INSUFFICIENT_PRIVILEGE,
  );
  await assert.rejects(
    allocate,
    (error) => sqlState(error) === INSUFFICIENT_PRIVILEGE,
  );
});

Deno.test("RLS hides the sealed CA key from members", async () => {
  await using database = await createTestDatabase();
  const { mine } = await setUp(database.db);
  await database.db.query(
    `insert into public.nebula_cas
       (project_id, cert_pem, fingerprint, not_before, not_after, encrypted_private_key, key_nonce)
     values ($1, 'certificate', repeat('a', 64), now(), now() + interval '1 day', '\\x00', $2)`,
    [mine.projectId, new Uint8Array(12)],
  );

  const key = () =>
    queryAs(
      database.db,
      "authenticated",
      mine.ownerId,
      "select encrypted_private_key from public.nebula_cas",
    );
  const certificate = await queryAs(
    database.db,
    "authenticated",
    mine.ownerId,
    "select cert_pem from public.nebula_cas",
  );

  await assert.rejects(
    key,
    (error) => sqlState(error) === INSUFFICIENT_PRIVILEGE,
  );
  assert.deepEqual(certificate.map((row) => row.cert_pem), ["certificate"]);
});
