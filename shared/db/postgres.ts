import postgres from "postgres";
import type { Db } from "./port.ts";
import { mapDatabaseError } from "./errors.ts";

export interface PostgresOptions {
  /** Maximum connections in the pool. */
  max?: number;
}

type Sql = postgres.Sql | postgres.TransactionSql;

function wrap(sql: Sql, root: postgres.Sql | null): Db {
  return {
    async query<T>(text: string, params: unknown[] = []): Promise<T[]> {
      try {
        // deno-lint-ignore no-explicit-any
        const rows = await sql.unsafe(text, params as any[]);
        return rows as unknown as T[];
      } catch (error) {
        throw mapDatabaseError(error);
      }
    },

    async exec(text: string): Promise<void> {
      try {
        // The simple query protocol accepts several statements in one text.
        await sql.unsafe(text).simple();
      } catch (error) {
        throw mapDatabaseError(error);
      }
    },

    async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
      if (!root) {
        // Already inside a transaction: a savepoint keeps nested calls atomic.
        const tx = sql as postgres.TransactionSql;
        return await tx.savepoint((inner) => fn(wrap(inner, null))) as T;
      }
      try {
        return await root.begin((tx) => fn(wrap(tx, null))) as T;
      } catch (error) {
        throw mapDatabaseError(error);
      }
    },

    async close(): Promise<void> {
      await root?.end({ timeout: 5 });
    },
  };
}

/**
 * Connects with postgres.js. `prepare: false` keeps it working behind
 * Supabase's transaction-mode pooler (Supavisor), where a prepared statement
 * made on one server connection does not exist on the next.
 */
export function connectPostgres(
  url: string,
  options: PostgresOptions = {},
): Db {
  const sql = postgres(url, {
    max: options.max ?? 10,
    prepare: false,
    onnotice: () => {},
    connection: { application_name: "vidsync-mesh" },
    types: {
      // Keep bigint counts and inet values as strings; callers convert.
      bigint: { to: 20, from: [20], serialize: String, parse: String },
    },
  });
  return wrap(sql, sql);
}
