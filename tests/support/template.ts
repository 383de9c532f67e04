/**
 * The template database every test database is cloned from: the local auth
 * stub, then the migrations applied by the real Supabase CLI.
 */
import postgres from "postgres";

const REPO_ROOT = new URL("../../", import.meta.url).pathname;
export const TEMPLATE_NAME = "vidsync_template";

/** Replaces the database name of a postgres URL. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Applies migrations with `supabase db push`, exactly as in production. */
export async function pushMigrations(databaseUrl: string): Promise<string> {
  const url = new URL(databaseUrl);
  if (!url.searchParams.has("sslmode")) {
    url.searchParams.set("sslmode", "disable");
  }

  const output = await new Deno.Command(
    `${REPO_ROOT}node_modules/.bin/supabase`,
    {
      args: [
        "db",
        "push",
        "--db-url",
        url.toString(),
        "--yes",
        "--workdir",
        REPO_ROOT,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
    },
  ).output();
  const text = new TextDecoder().decode(output.stdout) +
    new TextDecoder().decode(output.stderr);
  if (!output.success) {
    throw new Error(`supabase db push failed (exit ${output.code}):\n${text}`);
  }
  return text;
}

/** Applies the local auth stub, which migrations and RLS policies expect. */
export async function applyAuthStub(databaseUrl: string): Promise<void> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const stub = await Deno.readTextFile(`${REPO_ROOT}local/auth_stub.sql`);
    await sql.unsafe(stub).simple();
  } finally {
    await sql.end();
  }
}

/** Creates (or re-creates) the template database on the server at `serverUrl`. */
export async function buildTemplate(serverUrl: string): Promise<void> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(
      `drop database if exists ${TEMPLATE_NAME} with (force)`,
    );
    await admin.unsafe(`create database ${TEMPLATE_NAME}`);
  } finally {
    await admin.end();
  }

  const templateUrl = withDatabase(serverUrl, TEMPLATE_NAME);
  await applyAuthStub(templateUrl);
  await pushMigrations(templateUrl);
}
