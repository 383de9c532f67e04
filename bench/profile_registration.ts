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
  /** Median over registrations of the time spent awaiting statements (begin and commit excluded). */
  databaseMedianMs: number;
  statementsPerRegistration: number;
  statements: StatementProfile[];
}

/** Key of the whole transaction: its statements, begin, commit and the JavaScript between them. */
const TRANSACTION = "(transaction, from begin to commit)";

type Recorder = (statement: string, ms: number) => void;

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
      record(label(statement), performance.now() - started);
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
  await liftRateLimits(withDatabase(serverUrl, name));
  const plain = connectPostgres(withDatabase(serverUrl, name), { max: 4 });
  try {
    let current: Map<string, number> | null = null;
    let counting = false;
    const calls = new Map<string, number>();
    const db = timingDb(plain, (statement, ms) => {
      if (!current) return;
      current.set(statement, (current.get(statement) ?? 0) + ms);
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
      }
      current = null;
    }

    const statements = perStatement(runs, calls).filter((s) =>
      s.statement !== TRANSACTION
    );
    const databaseTime = (run: Map<string, number>) =>
      [...run].filter(([statement]) => statement !== TRANSACTION)
        .reduce((sum, [, ms]) => sum + ms, 0);

    return {
      samples,
      handlerMedianMs: round(median(handlerTimes)),
      transactionMedianMs: round(
        median(runs.map((run) => run.get(TRANSACTION) ?? 0)),
      ),
      databaseMedianMs: round(median(runs.map(databaseTime))),
      statementsPerRegistration: round(
        statements.reduce((sum, s) => sum + s.callsPerRegistration, 0),
      ),
      statements,
    };
  } finally {
    await plain.close();
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}
