/**
 * `npm start`: the local stack on 127.0.0.1:54321 (PORT overrides), on an
 * embedded PGlite database in .local/ or on DATABASE_URL when set.
 */
import { encodeBase64 } from "../shared/pki/base64.ts";
import { parseKek } from "../shared/pki/key_encryption.ts";
import { jsonLogger } from "../shared/http/log.ts";
import { startStack } from "./stack.ts";

const ROOT = new URL("../", import.meta.url);

/** Reads the KEK from NEBULA_CA_KEK, or generates one once into .local/ (mode 0600). */
async function localKek(dataRoot: string): Promise<Uint8Array> {
  const fromEnv = Deno.env.get("NEBULA_CA_KEK");
  if (fromEnv) return parseKek(fromEnv);
  const path = `${dataRoot}/ca-kek`;
  try {
    return parseKek(await Deno.readTextFile(path));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const kek = crypto.getRandomValues(new Uint8Array(32));
  await Deno.writeTextFile(path, encodeBase64(kek) + "\n", {
    mode: 0o600,
    createNew: true,
  });
  return kek;
}

const dataRoot = Deno.env.get("LOCAL_DATA_DIR") ??
  new URL(".local", ROOT).pathname;
await Deno.mkdir(dataRoot, { recursive: true });

const stack = await startStack({
  port: Number(Deno.env.get("PORT") ?? 54321),
  databaseUrl: Deno.env.get("DATABASE_URL") || undefined,
  dataDir: `${dataRoot}/pglite`,
  jwtSecret: Deno.env.get("SUPABASE_JWT_SECRET") || undefined,
  kek: await localKek(dataRoot),
  logger: jsonLogger,
  reclaimSecret: Deno.env.get("NEBULA_RECLAIM_SECRET") || undefined,
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    jsonLogger.info("local stack stopping", { signal });
    stack.close().finally(() => Deno.exit(0));
  });
}
