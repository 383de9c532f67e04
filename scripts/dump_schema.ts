/**
 * `npm run db:dump`: regenerates schema/schema.sql from a freshly migrated
 * database, so every migration shows its schema diff in review.
 */
import { createTestDatabase } from "../tests/support/db.ts";
import { dumpSchema, SCHEMA_DUMP_PATH } from "../tests/support/schema_dump.ts";

const database = await createTestDatabase();
try {
  await Deno.writeTextFile(SCHEMA_DUMP_PATH, await dumpSchema(database.url));
  console.log(`wrote ${SCHEMA_DUMP_PATH.pathname}`);
} finally {
  await database.drop();
}
