/**
 * The database port the allocator and handlers use. Both adapters take SQL
 * with `$1`-style placeholders, so one query text runs on PostgreSQL
 * (postgres.js) and on the embedded PGlite.
 */
export interface Db {
  /** Runs one statement and returns its rows. */
  query<T = Record<string, unknown>>(
    sql: string,
    params?: unknown[],
  ): Promise<T[]>;
  /** Runs a script of several statements without parameters. */
  exec(sql: string): Promise<void>;
  /** Runs `fn` in one transaction: commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  /** Closes the connections; the Db is unusable afterwards. */
  close(): Promise<void>;
}
