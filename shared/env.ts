/** Settings of the Edge Functions, read once from the environment and validated. */
import { z } from "zod";
import { parseKek } from "./pki/key_encryption.ts";

/** The Supabase CLI's well-known local JWT secret; only for local stacks. */
export const LOCAL_JWT_SECRET =
  "super-secret-jwt-token-with-at-least-32-characters-long";

const EnvSchema = z.object({
  SUPABASE_DB_URL: z.string().min(1).optional(),
  DATABASE_URL: z.string().min(1).optional(),
  SUPABASE_URL: z.url().optional(),
  SUPABASE_JWT_SECRET: z.string().min(32, "must be at least 32 characters")
    .optional(),
  SUPABASE_JWKS_URL: z.url().optional(),
  JWT_ISSUER: z.string().min(1).optional(),
  NEBULA_CA_KEK: z.string().min(1, "must be set to a base64 32-byte key"),
  DB_POOL_SIZE: z.coerce.number().int().min(1).max(100).optional(),
  NEBULA_RECLAIM_SECRET: z.string().min(32, "must be at least 32 characters")
    .optional(),
});

export interface Settings {
  databaseUrl: string;
  jwtSecret: string;
  jwksUrl?: string;
  issuer?: string;
  kek: Uint8Array;
  poolSize: number;
  /** Secret for `nebula-reclaim`; when unset, the function rejects every call. */
  reclaimSecret?: string;
}

/** Reads settings; the message names each missing or invalid variable, never its value. */
export function readSettings(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Settings {
  const result = EnvSchema.safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((issue) =>
      `${issue.path.join(".")} ${issue.message}`
    );
    throw new Error(`Invalid environment: ${problems.join("; ")}`);
  }
  const values = result.data;
  const databaseUrl = values.SUPABASE_DB_URL ?? values.DATABASE_URL;
  if (!databaseUrl) {
    throw new Error("Invalid environment: set SUPABASE_DB_URL or DATABASE_URL");
  }
  if (!values.SUPABASE_JWT_SECRET) {
    throw new Error("Invalid environment: set SUPABASE_JWT_SECRET");
  }

  const supabaseUrl = values.SUPABASE_URL?.replace(/\/$/, "");
  return {
    databaseUrl,
    jwtSecret: values.SUPABASE_JWT_SECRET,
    jwksUrl: values.SUPABASE_JWKS_URL ??
      (supabaseUrl
        ? `${supabaseUrl}/auth/v1/.well-known/jwks.json`
        : undefined),
    issuer: values.JWT_ISSUER ??
      (supabaseUrl ? `${supabaseUrl}/auth/v1` : undefined),
    kek: parseKek(values.NEBULA_CA_KEK),
    poolSize: values.DB_POOL_SIZE ?? 5,
    reclaimSecret: values.NEBULA_RECLAIM_SECRET,
  };
}
