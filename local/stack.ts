/**
 * The local stack without Docker: every function under
 * `/functions/v1/<name>` in one process, on the embedded PGlite database or
 * on PostgreSQL at DATABASE_URL. Tests start it in-process with `startStack`.
 */
import { SignJWT } from "jose";
import { createAuthenticator } from "../shared/auth/mod.ts";
import { applyMigrations, readMigrations } from "../shared/db/migrate.ts";
import { openPglite } from "../shared/db/pglite.ts";
import type { Db } from "../shared/db/port.ts";
import { connectPostgres } from "../shared/db/postgres.ts";
import { LOCAL_JWT_SECRET } from "../shared/env.ts";
import { CORS_HEADERS } from "../shared/http/cors.ts";
import { jsonLogger, type Logger } from "../shared/http/log.ts";
import { createFunction, FUNCTION_ROUTES } from "../shared/handlers/mod.ts";
import type { FetchHandler } from "../shared/http/serve.ts";

const ROOT = new URL("../", import.meta.url);

export interface StackOptions {
  port: number;
  hostname?: string;
  /** PostgreSQL URL; PGlite in `dataDir` when unset. */
  databaseUrl?: string;
  dataDir: string;
  jwtSecret?: string;
  kek: Uint8Array;
  logger?: Logger;
  now?: () => Date;
  /** Secret that `nebula-reclaim` requires; reclaim returns 401 without one. */
  reclaimSecret?: string;
}

export interface Stack {
  url: string;
  db: Db;
  jwtSecret: string;
  close(): Promise<void>;
}

/** Applies the auth stub (only where no auth schema exists) and the migrations. */
export async function prepareDatabase(db: Db): Promise<string[]> {
  const [{ present }] = await db.query<{ present: boolean }>(
    "select to_regclass('auth.users') is not null as present",
  );
  if (!present) {
    await db.exec(
      await Deno.readTextFile(new URL("local/auth_stub.sql", ROOT)),
    );
  }
  return await applyMigrations(
    db,
    await readMigrations(new URL("migrations/", ROOT)),
  );
}

/** Mints an access token shaped like one from Supabase Auth. */
export async function mintAccessToken(
  secret: string,
  user: { id: string; email: string },
  issuer: string,
  lifetimeSeconds = 24 * 3600,
): Promise<string> {
  return await new SignJWT({
    email: user.email,
    role: "authenticated",
    aal: "aal1",
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(user.id)
    .setAudience("authenticated")
    .setIssuer(issuer)
    .setIssuedAt()
    .setExpirationTime(`${lifetimeSeconds}s`)
    .sign(new TextEncoder().encode(secret));
}

/**
 * `POST /auth/v1/dev/users {email}`: creates or finds a local user and
 * returns an access token. The local stack has no auth server, and this
 * route exists only here, never in a deployed function.
 */
async function devUser(
  db: Db,
  request: Request,
  secret: string,
  issuer: string,
): Promise<Response> {
  const body = await request.json().catch(() => null) as
    | { email?: unknown }
    | null;
  const email = typeof body?.email === "string"
    ? body.email.trim().toLowerCase()
    : "";
  if (!/^[^\s@]+@[^\s@]+$/.test(email)) {
    return Response.json({ error: 'send {"email": "name@example.com"}' }, {
      status: 400,
    });
  }
  const [user] = await db.query<{ id: string }>(
    `insert into auth.users (email) values ($1)
     on conflict (email) do update set email = excluded.email returning id`,
    [email],
  );
  const token = await mintAccessToken(secret, { id: user.id, email }, issuer);
  return Response.json({
    id: user.id,
    email,
    access_token: token,
    token_type: "bearer",
  });
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const hostname = options.hostname ?? "127.0.0.1";
  const logger = options.logger ?? jsonLogger;
  const db = options.databaseUrl
    ? connectPostgres(options.databaseUrl, { max: 20 })
    : await openPglite(options.dataDir);
  const applied = await prepareDatabase(db);
  if (applied.length > 0) {
    logger.info("migrations applied", { versions: applied });
  }

  const jwtSecret = options.jwtSecret ?? LOCAL_JWT_SECRET;
  const url = `http://${hostname}:${options.port}`;
  const issuer = `${url}/auth/v1`;
  const deps = {
    db,
    auth: createAuthenticator(db, { jwtSecret, issuer }),
    kek: options.kek,
    logger,
    now: options.now ?? (() => new Date()),
    reclaimSecret: options.reclaimSecret,
  };
  const functions = new Map<string, FetchHandler>(
    Object.keys(FUNCTION_ROUTES).map((
      name,
    ) => [name, createFunction(name, deps)]),
  );

  const server = Deno.serve(
    { hostname, port: options.port, onListen() {} },
    (request) => {
      const { pathname } = new URL(request.url);
      if (pathname === "/auth/v1/dev/users" && request.method === "POST") {
        return devUser(db, request, jwtSecret, issuer);
      }
      const match = /^\/functions\/v1\/([^/]+)/.exec(pathname);
      const handler = match && functions.get(match[1]);
      if (handler) return handler(request);
      return new Response(
        JSON.stringify({
          type: "about:blank",
          title: "Not found",
          status: 404,
          code: "function_not_found",
          detail: `No function at ${pathname}`,
        }),
        {
          status: 404,
          headers: {
            "content-type": "application/problem+json",
            ...CORS_HEADERS,
          },
        },
      );
    },
  );
  logger.info("local stack listening", {
    url: `${url}/functions/v1`,
    database: options.databaseUrl ? "postgres" : "pglite",
  });

  return {
    url,
    db,
    jwtSecret,
    async close() {
      await server.shutdown();
      await db.close();
    },
  };
}
