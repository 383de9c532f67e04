import type { Db } from "./port.ts";

/** A migration file: `<version>_<name>.sql`. */
export interface Migration {
  version: string;
  name: string;
  sql: string;
}

const MIGRATION_FILE = /^(\d{14})_(.+)\.sql$/;

/** Reads migrations/*.sql in version order. */
export async function readMigrations(dir: string | URL): Promise<Migration[]> {
  const migrations: Migration[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const match = MIGRATION_FILE.exec(entry.name);
    if (!entry.isFile || !match) continue;
    const path = new URL(entry.name, toDirUrl(dir));
    migrations.push({
      version: match[1],
      name: match[2],
      sql: await Deno.readTextFile(path),
    });
  }
  return migrations.sort((a, b) => a.version.localeCompare(b.version));
}

function toDirUrl(dir: string | URL): URL {
  const text = dir instanceof URL
    ? dir.href
    : new URL(dir, `file://${Deno.cwd()}/`).href;
  return new URL(text.endsWith("/") ? text : `${text}/`);
}

/**
 * Applies the migrations that are not yet recorded, each in its own
 * transaction, and records them in supabase_migrations.schema_migrations the
 * way `supabase db push` does, so either tool can continue after the other.
 * Returns the versions it applied.
 */
export async function applyMigrations(
  db: Db,
  migrations: Migration[],
): Promise<string[]> {
  await db.query("create schema if not exists supabase_migrations");
  await db.query(
    `create table if not exists supabase_migrations.schema_migrations (
      version text not null primary key,
      statements text[],
      name text
    )`,
  );

  const rows = await db.query<{ version: string }>(
    "select version from supabase_migrations.schema_migrations",
  );
  const applied = new Set(rows.map((row) => row.version));
  const done: string[] = [];

  for (const migration of migrations) {
    if (applied.has(migration.version)) continue;
    await db.transaction(async (tx) => {
      await tx.exec(migration.sql);
      await tx.query(
        `insert into supabase_migrations.schema_migrations (version, statements, name)
         values ($1, $2, $3)`,
        [migration.version, [migration.sql], migration.name],
      );
    });
    done.push(migration.version);
  }

  return done;
}
