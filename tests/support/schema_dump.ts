/** The committed schema dump: pg_dump of the public schema after all migrations. */
import { findPostgresBinDir } from "./cluster.ts";

export const SCHEMA_DUMP_PATH = new URL(
  "../../schema/schema.sql",
  import.meta.url,
);

// Lines that change between pg_dump runs or versions, not with the schema.
const VOLATILE_LINE = /^(-- Dumped (from|by) |\\(un)?restrict )/;

/** Dumps the public schema of `databaseUrl`, without run-specific lines. */
export async function dumpSchema(databaseUrl: string): Promise<string> {
  const output = await new Deno.Command(`${findPostgresBinDir()}/pg_dump`, {
    args: ["--schema-only", "--schema=public", "--no-owner", databaseUrl],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr);
    throw new Error(`pg_dump failed (exit ${output.code}): ${stderr.trim()}`);
  }
  return new TextDecoder().decode(output.stdout)
    .split("\n")
    .filter((line) => !VOLATILE_LINE.test(line))
    .join("\n")
    .replace(/\n{3,}/g, "\n\n");
}
