/**
 * Rate limits across function instances: two local stacks on two ports share
 * one PostgreSQL test database, and parallel clients split between them draw
 * from the same token buckets.
 */
import assert from "node:assert/strict";
import { mintAccessToken, type Stack, startStack } from "../../local/stack.ts";
import type { Logger } from "../../shared/http/log.ts";
import { createTestDatabase } from "../support/db.ts";
import { deviceRequest, randomKek } from "./harness.ts";

const CLIENTS = 50;
const CAPACITY = 8;
// Slow enough that no token comes back while the test runs.
const REFILL_PER_SECOND = 0.001;

const silent: Logger = { info() {}, error() {} };

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function startStacks(databaseUrl: string, count: number) {
  const kek = randomKek();
  const stacks: Stack[] = [];
  for (let index = 0; index < count; index++) {
    stacks.push(
      await startStack({
        port: freePort(),
        databaseUrl,
        dataDir: "(unused with databaseUrl)",
        kek,
        logger: silent,
      }),
    );
  }
  return stacks;
}

async function createProject(stack: Stack, token: string): Promise<string> {
  const response = await fetch(`${stack.url}/functions/v1/nebula-project`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({
      name: "Rate limited",
      cidr: "10.43.0.0/24",
      lighthouses: [{ ip: "10.43.0.1", endpoints: ["198.51.100.7:4242"] }],
    }),
  });
  assert.equal(response.status, 201, await response.clone().text());
  return (await response.json()).id;
}

async function register(stack: Stack, token: string, projectId: string) {
  const { body } = await deviceRequest(projectId);
  const response = await fetch(`${stack.url}/functions/v1/nebula-register`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      "x-forwarded-for": `192.0.2.${Math.floor(Math.random() * 250) + 1}`,
    },
    body: JSON.stringify(body),
  });
  const problem = response.status === 429 ? await response.json() : null;
  if (!problem) await response.body?.cancel();
  return {
    status: response.status,
    retryAfter: response.headers.get("retry-after"),
    code: problem?.code as string | undefined,
  };
}

Deno.test({
  name: "register budget holds across two stacks",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using database = await createTestDatabase();
    const stacks = await startStacks(database.url, 2);
    try {
      const [{ id: userId }] = await database.db.query<{ id: string }>(
        "insert into auth.users (email) values ($1) returning id",
        [`hammer-${crypto.randomUUID().slice(0, 8)}@example.test`],
      );
      const user = { id: userId, email: "hammer@example.test" };
      // Each stack trusts tokens issued for its own URL.
      const tokens = await Promise.all(
        stacks.map((stack) =>
          mintAccessToken(stack.jwtSecret, user, `${stack.url}/auth/v1`)
        ),
      );
      const projectId = await createProject(stacks[0], tokens[0]);
      await database.db.query(
        `insert into public.rate_limit_policies (project_id, scope, endpoint, capacity, refill_per_second)
         values ($1, 'user', 'nebula-register', $2, $3)`,
        [projectId, CAPACITY, REFILL_PER_SECOND],
      );

      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: CLIENTS }, (_, index) => {
          const which = index % stacks.length;
          return register(stacks[which], tokens[which], projectId);
        }),
      );
      const elapsedSeconds = (performance.now() - started) / 1000;
      const budget = CAPACITY + Math.floor(elapsedSeconds * REFILL_PER_SECOND);
      const admitted = results.filter((result) => result.status === 201);
      const refused = results.filter((result) => result.status !== 201);
      const [{ devices }] = await database.db.query<{ devices: number }>(
        "select count(*)::int as devices from public.user_devices where project_id = $1 and nebula_ip is not null",
        [projectId],
      );
      console.log(
        `${CLIENTS} clients on ${stacks.length} stacks in ${
          elapsedSeconds.toFixed(2)
        } s: ${admitted.length} admitted, ${refused.length} refused, budget ${budget}`,
      );

      assert.ok(admitted.length <= budget, `${admitted.length} > ${budget}`);
      assert.equal(admitted.length, CAPACITY);
      assert.equal(devices, admitted.length);
      for (const result of refused) {
        assert.equal(result.status, 429);
        assert.equal(result.code, "rate_limited");
        assert.match(result.retryAfter ?? "", /^[1-9]\d*$/);
      }
    } finally {
      for (const stack of stacks) await stack.close();
    }
  },
});
