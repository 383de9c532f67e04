/**
 * 1000 register calls over HTTP, at most 64 in flight, against the local
 * stack on PostgreSQL, on a /24 with one lighthouse. The lighthouse's
 * reserved address plus the 253 pool addresses make 254 bundles with
 * distinct IPs. Every other call gets 409 `pool_exhausted`, never a 5xx.
 */
import assert from "node:assert/strict";
import { decodeJwt, SignJWT } from "jose";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  api,
  type ApiResponse,
  createDevUser,
  createProject,
  expectStatus,
  LOCAL_JWT_SECRET,
  type LocalStack,
  stackUnavailable,
  startLocalStack,
} from "../e2e/stack.ts";

const TOTAL_CALLS = 1000;
const IN_FLIGHT = 64;
const MEMBERS = 40;
const CIDR = "10.99.0.0/24";
const LIGHTHOUSE_IP = "10.99.0.1";
const HOSTS_IN_SLASH_24 = 254;

interface Caller {
  id: string;
  token: string;
}

interface Call {
  caller: Caller;
  lighthouse: boolean;
}

interface Outcome {
  status: number;
  code?: string;
  ip?: string;
  bundle?: string;
  ms: number;
}

/**
 * Mints tokens for users inserted directly, with the claims of a token that
 * `dev_user` issued, so they pass the same verification. Spawning the
 * script once per user would take most of the test's time budget.
 */
async function addMembers(
  stack: LocalStack,
  db: { query(sql: string, params?: unknown[]): Promise<unknown[]> },
  template: string,
  ownerToken: string,
  projectId: string,
): Promise<Caller[]> {
  const claims = decodeJwt(template);
  const key = new TextEncoder().encode(
    stack.env.SUPABASE_JWT_SECRET ?? LOCAL_JWT_SECRET,
  );
  const callers: Caller[] = [];
  for (let i = 0; i < MEMBERS; i++) {
    const id = crypto.randomUUID();
    const email = `member-${i}-${id}@example.test`;
    await db.query("insert into auth.users (id, email) values ($1, $2)", [
      id,
      email,
    ]);
    const token = await new SignJWT({ ...claims, sub: id, email })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .sign(key);
    const added = await api(
      stack,
      "POST",
      `nebula-project/${projectId}/members`,
      {
        token: ownerToken,
        body: { userId: id, role: "member" },
      },
    );
    expectStatus(added, 200, 201);
    callers.push({ id, token });
  }

  return callers;
}

async function register(
  stack: LocalStack,
  projectId: string,
  call: Call,
): Promise<Outcome> {
  const keys = await generateX25519KeyPair();
  const started = performance.now();
  let response: ApiResponse;
  try {
    response = await api(stack, "POST", "nebula-register", {
      token: call.caller.token,
      body: {
        projectId,
        deviceId: crypto.randomUUID(),
        deviceName: call.lighthouse ? "lighthouse" : "device",
        publicKey: keys.publicPem,
        ...(call.lighthouse ? { lighthouse: true } : {}),
      },
    });
  } catch (error) {
    // A dropped connection counts as a server failure.
    return {
      status: 599,
      code: String(error),
      ms: performance.now() - started,
    };
  }

  return {
    status: response.status,
    code: response.json?.code,
    ip: response.json?.ip,
    bundle: response.json?.bundle,
    ms: performance.now() - started,
  };
}

async function runBounded<T, R>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));

  return results;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

Deno.test({
  name: "1000 concurrent registrations fill a /24 exactly",
  ignore: stackUnavailable() !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using database = await createTestDatabase();
    // The default per-IP and per-user budgets would turn most of these
    // calls into 429; this test is about the allocator, not the limiter.
    await database.db.query(
      "update public.rate_limit_policies set capacity = 1000000, refill_per_second = 1000000",
    );
    await using stack = await startLocalStack(database.url);
    const owner = await createDevUser(
      stack,
      `owner-${crypto.randomUUID()}@example.test`,
    );
    const projectId = await createProject(stack, owner.access_token, CIDR, [
      { ip: LIGHTHOUSE_IP, endpoints: ["192.0.2.1:4242"], name: "lighthouse" },
    ]);
    const members = await addMembers(
      stack,
      database.db,
      owner.access_token,
      owner.access_token,
      projectId,
    );
    const ownerCaller = { id: owner.id, token: owner.access_token };
    const calls: Call[] = Array.from({ length: TOTAL_CALLS }, (_, i) => ({
      caller: i === TOTAL_CALLS / 2 ? ownerCaller : members[i % members.length],
      lighthouse: i === TOTAL_CALLS / 2,
    }));

    const started = performance.now();
    const outcomes = await runBounded(
      calls,
      IN_FLIGHT,
      (call) => register(stack, projectId, call),
    );
    const elapsedMs = performance.now() - started;

    const created = outcomes.filter((o) => o.status === 201);
    const rejected = outcomes.filter((o) => o.status !== 201);
    const serverErrors = outcomes.filter((o) => o.status >= 500);
    const latencies = outcomes.map((o) => o.ms).sort((x, y) => x - y);
    console.log(
      `${TOTAL_CALLS} calls, ${IN_FLIGHT} in flight: ${
        elapsedMs.toFixed(0)
      } ms, ` +
        `${(TOTAL_CALLS / elapsedMs * 1000).toFixed(0)} calls/s, latency p50 ` +
        `${percentile(latencies, 0.5).toFixed(0)} ms, p99 ` +
        `${percentile(latencies, 0.99).toFixed(0)} ms`,
    );

    assert.deepEqual(serverErrors.slice(0, 5), [], stack.logs().slice(-4000));
    assert.equal(created.length, HOSTS_IN_SLASH_24);
    assert.equal(new Set(created.map((o) => o.ip)).size, HOSTS_IN_SLASH_24);
    assert.ok(
      created.every((o) => typeof o.bundle === "string" && o.bundle.length > 0),
    );
    assert.equal(rejected.length, TOTAL_CALLS - HOSTS_IN_SLASH_24);
    assert.deepEqual(
      [...new Set(rejected.map((o) => `${o.status} ${o.code}`))],
      ["409 pool_exhausted"],
    );
    const lighthouse = outcomes[TOTAL_CALLS / 2];
    assert.equal(lighthouse.status, 201);
    assert.equal(lighthouse.ip, LIGHTHOUSE_IP);

    const rows = await database.db.query<{ count: number }>(
      "select count(*)::int as count from public.user_devices where project_id = $1 and nebula_ip is not null",
      [projectId],
    );
    assert.equal(rows[0].count, HOSTS_IN_SLASH_24);
  },
});
