import { PGlite } from "@electric-sql/pglite";
import type { Db } from "./port.ts";
import { mapDatabaseError } from "./errors.ts";

type Queryable = Pick<PGlite, "query" | "exec">;

function wrap(target: Queryable, root: PGlite | null): Db {
  return {
    async query<T>(text: string, params: unknown[] = []): Promise<T[]> {
      try {
        const result = await target.query<T>(text, params);
        return result.rows;
      } catch (error) {
        throw mapDatabaseError(error);
      }
    },

    async exec(text: string): Promise<void> {
      try {
        await target.exec(text);
      } catch (error) {
        throw mapDatabaseError(error);
      }
    },

    async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
      if (!root) {
        // PGlite runs one connection; nested calls join the open transaction.
        return await fn(wrap(target, null));
      }
      try {
        return await root.transaction((tx) => fn(wrap(tx, null)));
      } catch (error) {
        throw mapDatabaseError(error);
      }
    },

    async close(): Promise<void> {
      await root?.close();
    },
  };
}

/**
 * Opens the embedded PGlite database, in memory when `dataDir` is omitted.
 * PGlite is a single connection, so concurrent callers queue one by one.
 */
export async function openPglite(dataDir?: string): Promise<Db> {
  const db = dataDir ? new PGlite(dataDir) : new PGlite();
  await db.waitReady;
  return wrap(db, db);
}

/** Wraps an already open PGlite instance. */
export function wrapPglite(db: PGlite): Db {
  return wrap(db, db);
}
