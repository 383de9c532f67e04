import assert from "node:assert/strict";
import { createTestDatabase } from "../support/db.ts";
import { dumpSchema, SCHEMA_DUMP_PATH } from "../support/schema_dump.ts";
import { pushMigrations } from "../support/template.ts";

Deno.test("schema/schema.sql matches the migrations", async () => {
  await using database = await createTestDatabase();

  const current = await dumpSchema(database.url);
  const committed = await Deno.readTextFile(SCHEMA_DUMP_PATH);

  assert.ok(
    current === committed,
    "schema/schema.sql is stale: run `npm run db:dump` and commit the result",
  );
});

Deno.test("supabase db push twice leaves schema and data alone", async () => {
  await using database = await createTestDatabase();
  const before = await dumpSchema(database.url);
  await database.db.query(
    "insert into auth.users (email) values ('kept@example.test')",
  );

  const output = await pushMigrations(database.url);

  assert.match(output, /up to date/i);
  assert.equal(await dumpSchema(database.url), before);
  const users = await database.db.query(
    "select 1 from auth.users where email = 'kept@example.test'",
  );
  assert.equal(users.length, 1);
});
