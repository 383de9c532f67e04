import { defineAllocatorSuite } from "./suite.ts";
import { openPglite } from "../../shared/db/pglite.ts";
import { applyMigrations, readMigrations } from "../../shared/db/migrate.ts";

const ROOT = new URL("../../", import.meta.url);

defineAllocatorSuite("pglite", async () => {
  const db = await openPglite();
  await db.exec(await Deno.readTextFile(new URL("local/auth_stub.sql", ROOT)));
  await applyMigrations(db, await readMigrations(new URL("migrations/", ROOT)));
  return db;
});
