/**
 * Time profile of one registration: the `nebula-register` handler runs
 * in this process on real PostgreSQL, behind a Db wrapper that times every
 * statement. Statements are grouped by their text, so the report shows the
 * database share of a registration, statement by statement, and what is
 * left for JavaScript (JWT check, key unsealing, signing, YAML, ZIP, JSON).
 */
import postgres from "postgres";
import { createAuthenticator } from "../shared/auth/mod.ts";
import type { Db } from "../shared/db/port.ts";
import { connectPostgres } from "../shared/db/postgres.ts";
import { createFunction } from "../shared/handlers/mod.ts";
import { silentLogger } from "../shared/http/log.ts";
import { generateX25519KeyPair } from "../shared/pki/keys.ts";
import { mintAccessToken } from "../local/stack.ts";
import { TEMPLATE_NAME, withDatabase } from "../tests/support/template.ts";
import { liftRateLimits } from "./database.ts";
import { median, round } from "./stats.ts";

const BASE = "http://127.0.0.1:54321";
const ISSUER = `${BASE}/auth/v1`;
const JWT_SECRET = "bench-secret-with-at-least-32-characters-in-it";

export interface StatementProfile {
  /** The statement's first line, whitespace collapsed, at most 100 characters. */
  statement: string;
  callsPerRegistration: number;
  /** Median over registrations of the time this statement took within one registration. */
  medianMsPerRegistration: number;
}

export interface RegistrationProfile {
  samples: number;
  /** Median time of the whole handler call, in process. */
  handlerMedianMs: number;
  /** Median time from begin to commit, statements and JavaScript inside included. */
  transactionMedianMs: number;
  /**
   * Median over registrations of the time at least one statement was
   * running (begin and commit excluded). Statements that run at once count once.
   */
  databaseMedianMs: number;
  statementsPerRegistration: number;
  statements: StatementProfile[];
  /** Mean time inside the server of each SQL function a registration calls, nested calls included. */
  serverFunctions: ServerFunctionProfile[];
}

export interface ServerFunctionProfile {
  name: string;
  callsPerRegistration: number;
  meanMsPerCall: number;
}

/** Functions whose server-side time the profile reports, in call order. */
const SERVER_FUNCTIONS = [
  "take_rate_limit_token",
  "register_nebula_device",
  "allocate_nebula_ip",
  "get_nebula_blocklist",
  "record_nebula_certificate",
  "append_audit_event",
];

/** Key of the whole transaction: its statements, begin, commit and the JavaScript between them. */
const TRANSACTION = "(transaction, from begin to commit)";

type Recorder = (statement: string, started: number, ended: number) => void;

function label(sql: string): string {
  const text = sql.replace(/\s+/g, " ").trim();
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

/** Wraps `db` so every statement, also inside transactions, reports its duration. */
function timingDb(db: Db, record: Recorder): Db {
  const measure = async <T>(statement: string, run: () => Promise<T>) => {
    const started = performance.now();
    try {
      return await run();
    } finally {
      record(label(statement), started, performance.now());
    }
  };

  return {
    query: (sql, params) => measure(sql, () => db.query(sql, params)),
    exec: (sql) => measure(sql, () => db.exec(sql)),
    transaction: (fn) =>
      measure(
        TRANSACTION,
        () => db.transaction((tx) => fn(timingDb(tx, record))),
      ),
    close: () => db.close(),
  };
}

function perStatement(
  runs: Map<string, number>[],
  calls: Map<string, number>,
): StatementProfile[] {
  const statements = [...calls.keys()].map((statement) => ({
    statement,
    callsPerRegistration: round(calls.get(statement)! / runs.length),
    medianMsPerRegistration: round(
      median(runs.map((run) => run.get(statement) ?? 0)),
    ),
  }));

  return statements.sort((a, b) =>
    b.medianMsPerRegistration - a.medianMsPerRegistration
  );
}

/** Length of the union of `intervals`: time covered by at least one of them. */
function coveredMs(intervals: [number, number][]): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  for (const [start, stop] of sorted) {
    if (stop <= end) continue;
    total += stop - Math.max(start, end);
    end = stop;
  }
  return total;
}

/** Reads the server-side time of SQL functions; needs track_functions on the database. */
async function serverFunctionTimes(db: Db): Promise<ServerFunctionProfile[]> {
  const rows = await db.query<
    { funcname: string; calls: string; total_time: number }
  >(
    `select funcname, calls::text as calls, total_time
     from pg_stat_user_functions where funcname = any($1::text[])`,
    [SERVER_FUNCTIONS],
  );
  // Calls are counted per register_nebula_device call, which runs once per
  // registration, because statistics of the last calls may not be published yet.
  const registrations = Number(
    rows.find((row) => row.funcname === "register_nebula_device")?.calls ?? 0,
  );
  if (registrations === 0) return [];
  return SERVER_FUNCTIONS.flatMap((name) => {
    const row = rows.find((candidate) => candidate.funcname === name);
    if (!row || Number(row.calls) === 0) return [];
    return [{
      name,
      callsPerRegistration: round(Number(row.calls) / registrations),
      meanMsPerCall: round(row.total_time / Number(row.calls)),
    }];
  });
}

async function createOwnerToken(db: Db): Promise<string> {
  const email = `profile-${crypto.randomUUID()}@bench.test`;
  const [user] = await db.query<{ id: string }>(
    "insert into auth.users (email) values ($1) returning id",
    [email],
  );

  return await mintAccessToken(JWT_SECRET, { id: user.id, email }, ISSUER);
}

function post(path: string, token: string, body: unknown): Request {
  return new Request(`${BASE}/functions/v1/${path}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(body),
  });
}

/** Profiles `samples` registrations of new devices on a fresh clone of the template. */
export async function profileRegistration(
  serverUrl: string,
  samples: number,
): Promise<RegistrationProfile> {
  const name = `bench_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name} template ${TEMPLATE_NAME}`);
  await admin.unsafe(`alter database ${name} set track_functions = 'all'`);
  await liftRateLimits(withDatabase(serverUrl, name));
  const plain = connectPostgres(withDatabase(serverUrl, name), { max: 4 });
  try {
    let current: Map<string, number> | null = null;
    let intervals: [number, number][] = [];
    let counting = false;
    const calls = new Map<string, number>();
    const db = timingDb(plain, (statement, started, ended) => {
      if (!current) return;
      current.set(statement, (current.get(statement) ?? 0) + ended - started);
      if (statement !== TRANSACTION) intervals.push([started, ended]);
      if (counting) calls.set(statement, (calls.get(statement) ?? 0) + 1);
    });
    const deps = {
      db,
      auth: createAuthenticator(db, { jwtSecret: JWT_SECRET, issuer: ISSUER }),
      kek: crypto.getRandomValues(new Uint8Array(32)),
      logger: silentLogger,
      now: () => new Date(),
    };
    const project = createFunction("nebula-project", deps);
    const register = createFunction("nebula-register", deps);

    const token = await createOwnerToken(plain);
    const created = await project(post("nebula-project", token, {
      name: "profile",
      cidr: "10.151.0.0/16",
      lighthouses: [{ ip: "10.151.0.1", endpoints: ["192.0.2.1:4242"] }],
    }));
    const projectId = (await created.json()).id as string;
    // Profile the steady state; the benchmark measures the unanalyzed pool apart.
    await plain.exec("analyze public.nebula_ip_pool");

    const runs: Map<string, number>[] = [];
    const handlerTimes: number[] = [];
    const databaseTimes: number[] = [];
    // The first registrations warm up the JIT and the connections; not counted.
    for (let index = -20; index < samples; index++) {
      const keys = await generateX25519KeyPair();
      const request = post("nebula-register", token, {
        projectId,
        deviceId: crypto.randomUUID(),
        deviceName: `profile-${index}`,
        publicKey: keys.publicPem,
      });
      current = new Map();
      intervals = [];
      counting = index >= 0;
      const started = performance.now();
      const response = await register(request);
      await response.arrayBuffer();
      const elapsed = performance.now() - started;
      if (response.status !== 201) {
        throw new Error(`registration failed with status ${response.status}`);
      }
      if (index >= 0) {
        runs.push(current);
        handlerTimes.push(elapsed);
        databaseTimes.push(coveredMs(intervals));
      }
      current = null;
    }

    const statements = perStatement(runs, calls).filter((s) =>
      s.statement !== TRANSACTION
    );
    // The server publishes function statistics about once a second.
    await new Promise((resolve) => setTimeout(resolve, 1500));

    return {
      samples,
      handlerMedianMs: round(median(handlerTimes)),
      transactionMedianMs: round(
        median(runs.map((run) => run.get(TRANSACTION) ?? 0)),
      ),
      databaseMedianMs: round(median(databaseTimes)),
      statementsPerRegistration: round(
        statements.reduce((sum, s) => sum + s.callsPerRegistration, 0),
      ),
      statements,
      serverFunctions: await serverFunctionTimes(plain),
    };
  } finally {
    await plain.close();
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}
