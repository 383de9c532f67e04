import { defineAllocatorSuite } from "./suite.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

let database: TestDatabase | undefined;

defineAllocatorSuite("postgres", async () => {
  database = await createTestDatabase();
  return database.db;
});

globalThis.addEventListener("unload", () => {
  // The cluster's own cleanup drops every database with it.
  database = undefined;
});
