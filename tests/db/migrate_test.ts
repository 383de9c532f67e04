/**
 * Migration bookkeeping: `supabase db push` and shared/db/migrate.ts record
 * the same versions, so either can continue after the other. A server that
 * rejects connections becomes DatabaseUnavailableError.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { connectPostgres } from "../../shared/db/postgres.ts";
import { openPglite } from "../../shared/db/pglite.ts";
import { applyMigrations, readMigrations } from "../../shared/db/migrate.ts";
import { DatabaseUnavailableError } from "../../shared/errors.ts";
import { createTestDatabase, testServerUrl } from "../support/db.ts";
import { dumpSchema, SCHEMA_DUMP_PATH } from "../support/schema_dump.ts";
import {
  applyAuthStub,
  pushMigrations,
  withDatabase,
} from "../support/template.ts";

const ROOT = new URL("../../", import.meta.url);
const MIGRATIONS_DIR = new URL("migrations/", ROOT);

async function migrationVersions(): Promise<string[]> {
  const migrations = await readMigrations(MIGRATIONS_DIR);
  return migrations.map((migration) => migration.version);
}

/** Creates an empty database with only the auth stub, and returns its URL and a drop function. */
async function createBareDatabase() {
  const server = await testServerUrl();
  const name = `bare_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(server, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = withDatabase(server, name);
  await applyAuthStub(url);

  const drop = async () => {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  };
  return { url, drop };
}

Deno.test("supabase db push follows the migrations link", async () => {
  await using database = await createTestDatabase();

  const rows = await database.db.query<{ version: string }>(
    "select version from supabase_migrations.schema_migrations order by version",
  );

  const expected = await migrationVersions();
  assert.ok(expected.length > 0, "migrations/ holds migration files");
  assert.deepEqual(rows.map((row) => row.version), expected);
});

Deno.test("applyMigrations() after supabase db push applies nothing", async () => {
  await using database = await createTestDatabase();

  const applied = await applyMigrations(
    database.db,
    await readMigrations(MIGRATIONS_DIR),
  );

  assert.deepEqual(applied, []);
});

Deno.test("supabase db push after applyMigrations() is a no-op", async () => {
  const bare = await createBareDatabase();
  try {
    const db = connectPostgres(bare.url, { max: 1 });
    let applied: string[];
    try {
      applied = await applyMigrations(
        db,
        await readMigrations(MIGRATIONS_DIR),
      );
    } finally {
      await db.close();
    }

    const output = await pushMigrations(bare.url);

    assert.deepEqual(applied, await migrationVersions());
    assert.match(output, /up to date/i);
    assert.equal(
      await dumpSchema(bare.url),
      await Deno.readTextFile(SCHEMA_DUMP_PATH),
      "applyMigrations() builds the same schema as supabase db push",
    );
  } finally {
    await bare.drop();
  }
});

Deno.test("applyMigrations() twice on PGlite applies once", async () => {
  const db = await openPglite();
  try {
    await db.exec(
      await Deno.readTextFile(new URL("local/auth_stub.sql", ROOT)),
    );
    const migrations = await readMigrations(MIGRATIONS_DIR);

    const first = await applyMigrations(db, migrations);
    const second = await applyMigrations(db, migrations);

    assert.deepEqual(first, await migrationVersions());
    assert.deepEqual(second, []);
  } finally {
    await db.close();
  }
});

Deno.test("refused connection raises DatabaseUnavailableError", async () => {
  // The port was free a moment ago, so nothing listens there.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const db = connectPostgres(`postgresql://postgres@127.0.0.1:${port}/none`, {
    max: 1,
  });

  try {
    await assert.rejects(
      () => db.query("select 1"),
      (error: unknown) => {
        assert.ok(error instanceof DatabaseUnavailableError);
        assert.equal(error.code, "database_unavailable");
        return true;
      },
    );
  } finally {
    await db.close();
  }
});
