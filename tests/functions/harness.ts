/**
 * Calls the Edge Function handlers in-process on a fresh PostgreSQL test
 * database, with users in the local auth stub, HS256 access tokens signed
 * with the local JWT secret, a settable clock and captured log lines.
 */
import { SignJWT } from "jose";
import JSZip from "jszip";
import { createAuthenticator } from "../../shared/auth/mod.ts";
import type { Db } from "../../shared/db/port.ts";
import { LOCAL_JWT_SECRET } from "../../shared/env.ts";
import type { HandlerDeps } from "../../shared/handlers/deps.ts";
import { createFunction } from "../../shared/handlers/mod.ts";
import type { LogFields, Logger } from "../../shared/http/log.ts";
import type { FetchHandler } from "../../shared/http/serve.ts";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

export const ISSUER = "http://127.0.0.1:54321/auth/v1";
export const FUNCTIONS_BASE = "http://127.0.0.1:54321/functions/v1";

export interface LogLine extends LogFields {
  level: "info" | "error";
  msg: string;
}

export interface TestUser {
  id: string;
  email: string;
  token: string;
}

export interface CallOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Leave out the `/functions/v1` prefix, as the platform does. */
  bare?: boolean;
}

export interface Harness extends AsyncDisposable {
  database: TestDatabase;
  db: Db;
  deps: HandlerDeps;
  logs: LogLine[];
  /** Moves the clock the handlers read. */
  setNow(now: Date): void;
  call(
    name: string,
    method: string,
    path: string,
    options?: CallOptions,
  ): Promise<Response>;
  createUser(label?: string): Promise<TestUser>;
  createProject(
    owner: TestUser,
    overrides?: Record<string, unknown>,
  ): Promise<ProjectView>;
}

export interface ProjectView {
  id: string;
  cidr: string;
  lighthouses: { ip: string; endpoints: string[]; deviceId: string | null }[];
  pool: { total: number; allocated: number; quarantined: number; free: number };
  ca: { fingerprint: string; notBefore: string; notAfter: string };
}

export function randomKek(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

/** Signs an access token shaped like one from Supabase Auth. */
export async function signUserToken(
  userId: string,
  options: {
    secret?: string;
    audience?: string;
    issuer?: string;
    expiresAt?: number;
    role?: string;
  } = {},
): Promise<string> {
  const nowSeconds = Math.floor(Date.now() / 1000);
  return await new SignJWT({ role: options.role ?? "authenticated" })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(userId)
    .setAudience(options.audience ?? "authenticated")
    .setIssuer(options.issuer ?? ISSUER)
    .setIssuedAt(nowSeconds - 10)
    .setExpirationTime(options.expiresAt ?? nowSeconds + 3600)
    .sign(new TextEncoder().encode(options.secret ?? LOCAL_JWT_SECRET));
}

function captureLogger(lines: LogLine[]): Logger {
  return {
    info: (msg, fields = {}) => lines.push({ level: "info", msg, ...fields }),
    error: (msg, fields = {}) => lines.push({ level: "error", msg, ...fields }),
  };
}

export const DEFAULT_LIGHTHOUSES = [
  { ip: "10.42.0.1", endpoints: ["198.51.100.10:4242"], name: "lh-one" },
];

export async function startHarness(
  options: { kek?: Uint8Array } = {},
): Promise<Harness> {
  const database = await createTestDatabase();
  const db = database.db;
  const logs: LogLine[] = [];
  let now: Date | undefined;
  const deps: HandlerDeps = {
    db,
    auth: createAuthenticator(db, {
      jwtSecret: LOCAL_JWT_SECRET,
      issuer: ISSUER,
    }),
    kek: options.kek ?? randomKek(),
    logger: captureLogger(logs),
    now: () => now ?? new Date(),
  };
  const handlers = new Map<string, FetchHandler>();
  const handlerFor = (name: string) => {
    if (!handlers.has(name)) handlers.set(name, createFunction(name, deps));
    return handlers.get(name)!;
  };

  const call: Harness["call"] = (name, method, path, callOptions = {}) => {
    const headers = new Headers(callOptions.headers);
    if (callOptions.token) {
      headers.set("authorization", `Bearer ${callOptions.token}`);
    }
    let body: string | undefined;
    if (callOptions.body !== undefined) {
      body = JSON.stringify(callOptions.body);
      if (!headers.has("content-type")) {
        headers.set("content-type", "application/json");
      }
    }
    const base = callOptions.bare ? "http://127.0.0.1:54321" : FUNCTIONS_BASE;
    return handlerFor(name)(
      new Request(`${base}/${name}${path}`, { method, headers, body }),
    );
  };

  const createUser = async (label = "user") => {
    const email = `${label}-${crypto.randomUUID().slice(0, 8)}@example.test`;
    const [row] = await db.query<{ id: string }>(
      "insert into auth.users (email) values ($1) returning id",
      [email],
    );
    return { id: row.id, email, token: await signUserToken(row.id) };
  };

  const createProject = async (
    owner: TestUser,
    overrides: Record<string, unknown> = {},
  ) => {
    const response = await call("nebula-project", "POST", "", {
      token: owner.token,
      body: {
        name: "Film cut",
        cidr: "10.42.0.0/24",
        lighthouses: DEFAULT_LIGHTHOUSES,
        ...overrides,
      },
    });
    if (response.status !== 201) {
      throw new Error(
        `project setup failed: ${response.status} ${await response.text()}`,
      );
    }
    return await response.json() as ProjectView;
  };

  return {
    database,
    db,
    deps,
    logs,
    setNow: (value) => {
      now = value;
    },
    call,
    createUser,
    createProject,
    [Symbol.asyncDispose]: () => database.drop(),
  };
}

/** Builds a register request body for a new device with a fresh key pair. */
export async function deviceRequest(
  projectId: string,
  extra: Record<string, unknown> = {},
) {
  const keys = await generateX25519KeyPair();
  return {
    body: {
      projectId,
      deviceId: crypto.randomUUID(),
      deviceName: "edit-suite",
      publicKey: keys.publicPem,
      ...extra,
    },
    privatePem: keys.privatePem,
  };
}

/** Reads a problem document and checks its media type and CORS header. */
export async function readProblem(response: Response) {
  const type = response.headers.get("content-type");
  if (type !== "application/problem+json") {
    throw new Error(
      `expected a problem document, got ${type}: ${await response.text()}`,
    );
  }
  return await response.json() as {
    type: string;
    title: string;
    status: number;
    detail: string;
    code: string;
    errors?: { field: string; message: string }[];
    pool?: Record<string, number>;
  };
}

/** Unpacks a bundle into `dir` and returns the entry names. */
export async function unpackBundle(
  bytes: Uint8Array,
  dir: string,
): Promise<string[]> {
  const zip = await JSZip.loadAsync(bytes);
  const names = Object.keys(zip.files);
  for (const name of names) {
    const content = await zip.file(name)!.async("uint8array");
    await Deno.writeFile(`${dir}/${name}`, content);
  }
  return names;
}

/** Counts the rows that project, member, register and release calls change. */
export async function rowCounts(db: Db): Promise<Record<string, number>> {
  const [row] = await db.query<Record<string, number>>(
    `select (select count(*)::int from public.projects) as projects,
       (select count(*)::int from public.project_members) as members,
       (select count(*)::int from public.nebula_lighthouses) as lighthouses,
       (select count(*)::int from public.user_devices where nebula_ip is not null) as admitted,
       (select count(*)::int from public.nebula_certificates where revoked_at is not null) as revoked,
       (select count(*)::int from public.user_devices) as devices,
       (select count(*)::int from public.nebula_ip_pool where device_id is not null) as allocated,
       (select count(*)::int from public.nebula_ip_allocations) as allocations,
       (select count(*)::int from public.nebula_certificates) as certificates,
       (select count(*)::int from public.nebula_cas) as cas`,
  );
  return row;
}
