/**
 * Test databases: each test gets a fresh database cloned from the migrated
 * template. `npm test` (scripts/test.ts) starts one cluster for the whole run
 * and passes it down in VIDSYNC_TEST_SERVER_URL; a test file run on its own
 * starts a cluster of its own, stopped when the process exits.
 */
import postgres from "postgres";
import {
  connectPostgres,
  type PostgresOptions,
} from "../../shared/db/postgres.ts";
import type { Db } from "../../shared/db/port.ts";
import {
  type Cluster,
  startCluster,
  stopClusterSync,
  stopClusterWhenGone,
} from "./cluster.ts";
import { buildTemplate, TEMPLATE_NAME, withDatabase } from "./template.ts";

export const SERVER_URL_ENV = "VIDSYNC_TEST_SERVER_URL";

export interface TestDatabase extends AsyncDisposable {
  /** URL of the new database, for code that connects by itself. */
  url: string;
  /** A pooled connection as the database owner (as the Edge Functions connect). */
  db: Db;
  /** Opens another pool, e.g. to act as several function instances. */
  connect(options?: PostgresOptions): Db;
  drop(): Promise<void>;
}

let serverUrl: Promise<string> | undefined;

async function startOwnServer(): Promise<string> {
  const cluster: Cluster = await startCluster();
  globalThis.addEventListener("unload", () => stopClusterSync(cluster));
  // `unload` does not run when `deno test` is interrupted.
  stopClusterWhenGone(cluster);
  await buildTemplate(cluster.url);
  return cluster.url;
}

/** URL of a server whose template database is ready. */
export function testServerUrl(): Promise<string> {
  const fromEnv = Deno.env.get(SERVER_URL_ENV);
  serverUrl ??= fromEnv ? Promise.resolve(fromEnv) : startOwnServer();
  return serverUrl;
}

/** Creates a fresh migrated database and connects to it. */
export async function createTestDatabase(
  options: PostgresOptions = {},
): Promise<TestDatabase> {
  const server = await testServerUrl();
  const name = `test_${crypto.randomUUID().replaceAll("-", "")}`;

  const admin = postgres(server, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name} template ${TEMPLATE_NAME}`);
  } finally {
    await admin.end();
  }

  const url = withDatabase(server, name);
  const pools: Db[] = [];
  const connect = (connectOptions: PostgresOptions = {}) => {
    const pool = connectPostgres(url, connectOptions);
    pools.push(pool);
    return pool;
  };
  const db = connect(options);

  const drop = async () => {
    await Promise.all(pools.map((pool) => pool.close()));
    const cleanup = postgres(server, { max: 1, onnotice: () => {} });
    try {
      await cleanup.unsafe(`drop database if exists ${name} with (force)`);
    } finally {
      await cleanup.end();
    }
  };

  return { url, db, connect, drop, [Symbol.asyncDispose]: drop };
}
