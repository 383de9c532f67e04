import assert from "node:assert/strict";
import { createTestDatabase } from "../support/db.ts";
import type { Db } from "../../shared/db/port.ts";
import { sqlState } from "../../shared/db/errors.ts";
import { RateLimitedError } from "../../shared/errors.ts";
import {
  enforceRateLimits,
  pruneRateLimitBuckets,
  rateLimitHeaders,
  takeRateLimitToken,
} from "../../shared/ratelimit/mod.ts";

const T0 = new Date("2027-03-01T12:00:00Z");
const ENDPOINT = "nebula-register";

function at(seconds: number): Date {
  return new Date(T0.getTime() + seconds * 1000);
}

async function createProject(
  db: Db,
  capacity: number,
  refillPerSecond: number,
) {
  const [user] = await db.query<{ id: string }>(
    "insert into auth.users (email) values ('owner@example.test') returning id",
  );
  const [project] = await db.query<{ id: string }>(
    `insert into public.projects (name, cidr, created_by)
     values ('limits', '10.42.0.0/24', $1) returning id`,
    [user.id],
  );
  await db.query(
    `insert into public.rate_limit_policies (project_id, scope, endpoint, capacity, refill_per_second)
     values ($1, 'user', $2, $3, $4)`,
    [project.id, ENDPOINT, capacity, refillPerSecond],
  );
  return project.id;
}

Deno.test("take_rate_limit_token() never exceeds the budget under concurrent takers", async () => {
  await using database = await createTestDatabase();
  const projectId = await createProject(database.db, 10, 0.01);
  const pools = Array.from({ length: 5 }, () => database.connect({ max: 10 }));

  const results = await Promise.all(
    Array.from(
      { length: 50 },
      (_, index) =>
        takeRateLimitToken(pools[index % pools.length], {
          scope: "user",
          key: "user-1",
          endpoint: ENDPOINT,
          projectId,
        }, T0),
    ),
  );

  const allowed = results.filter((result) => result.allowed);
  assert.equal(allowed.length, 10);
  for (const refused of results.filter((result) => !result.allowed)) {
    assert.equal(refused.retryAfterSeconds, 100);
  }
  const remaining = allowed.map((result) => result.remaining).sort((a, b) =>
    a - b
  );
  assert.deepEqual(remaining, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

Deno.test("take_rate_limit_token() returns the seconds until a token is back", async () => {
  await using database = await createTestDatabase();
  const projectId = await createProject(database.db, 2, 0.5);
  const check = {
    scope: "user" as const,
    key: "user-1",
    endpoint: ENDPOINT,
    projectId,
  };

  assert.equal(
    (await takeRateLimitToken(database.db, check, at(0))).allowed,
    true,
  );
  assert.equal(
    (await takeRateLimitToken(database.db, check, at(0))).allowed,
    true,
  );
  const empty = await takeRateLimitToken(database.db, check, at(0));
  const almost = await takeRateLimitToken(database.db, check, at(1.9));
  const refilled = await takeRateLimitToken(database.db, check, at(2));
  const afterLongWait = await takeRateLimitToken(database.db, check, at(3600));

  assert.equal(empty.allowed, false);
  assert.equal(empty.retryAfterSeconds, 2);
  assert.equal(almost.allowed, false);
  assert.equal(almost.retryAfterSeconds, 1);
  assert.equal(refilled.allowed, true);
  assert.equal(refilled.remaining, 0);
  assert.equal(afterLongWait.allowed, true);
  assert.equal(
    afterLongWait.remaining,
    1,
    "a bucket refills up to its capacity only",
  );
});

Deno.test("take_rate_limit_token() keeps buckets apart by key, scope and endpoint", async () => {
  await using database = await createTestDatabase();
  const projectId = await createProject(database.db, 1, 0.001);
  const base = {
    scope: "user" as const,
    key: "user-1",
    endpoint: ENDPOINT,
    projectId,
  };

  assert.equal((await takeRateLimitToken(database.db, base, T0)).allowed, true);
  assert.equal(
    (await takeRateLimitToken(database.db, base, T0)).allowed,
    false,
  );
  const otherKey = await takeRateLimitToken(database.db, {
    ...base,
    key: "user-2",
  }, T0);
  const otherEndpoint = await takeRateLimitToken(
    database.db,
    { ...base, endpoint: "nebula-renew" },
    T0,
  );
  const otherScope = await takeRateLimitToken(
    database.db,
    { ...base, scope: "ip", key: "192.0.2.1" },
    T0,
  );

  assert.equal(otherKey.allowed, true);
  assert.equal(otherEndpoint.allowed, true);
  assert.equal(
    otherEndpoint.capacity,
    30,
    "nebula-renew falls back to the user default",
  );
  assert.equal(otherScope.capacity, 60, "ip scope uses the ip default");
});

Deno.test("take_rate_limit_token() rejects invalid requests and changes nothing", async () => {
  await using database = await createTestDatabase();
  const cases = [
    ["host", "k", ENDPOINT, 1],
    ["user", "", ENDPOINT, 1],
    ["user", "k", "", 1],
    ["user", "k", ENDPOINT, 0],
    ["user", "k", ENDPOINT, 31],
  ];

  for (const [scope, key, endpoint, cost] of cases) {
    await assert.rejects(
      () =>
        database.db.query(
          "select * from public.take_rate_limit_token($1, $2, $3, null, $4)",
          [
            scope,
            key,
            endpoint,
            cost,
          ],
        ),
      (error) => sqlState(error) === "VS111",
      `${scope}/${key}/${endpoint}/${cost}`,
    );
  }

  const buckets = await database.db.query(
    "select 1 from public.rate_limit_buckets",
  );
  assert.equal(buckets.length, 0);
});

Deno.test("enforceRateLimits() throws rate_limited with the longest wait", async () => {
  await using database = await createTestDatabase();
  const projectId = await createProject(database.db, 1, 0.25);
  const checks = [
    { scope: "ip" as const, key: "192.0.2.1", endpoint: ENDPOINT, projectId },
    { scope: "user" as const, key: "user-1", endpoint: ENDPOINT, projectId },
  ];

  const first = await enforceRateLimits(database.db, checks, T0);
  const error = await enforceRateLimits(database.db, checks, T0).then(
    () => null,
    (caught) => caught,
  );

  assert.equal(first?.remaining, 0);
  assert.ok(error instanceof RateLimitedError);
  assert.equal(error.code, "rate_limited");
  assert.equal(error.status, 429);
  assert.equal(error.retryAfterSeconds, 4);
  assert.equal(error.headers["RateLimit-Limit"], "1");
  assert.equal(error.headers["RateLimit-Remaining"], "0");
  assert.equal(error.headers["Retry-After"], "4");
});

Deno.test("rateLimitHeaders() sets Retry-After only when refused", () => {
  const refused = rateLimitHeaders({
    allowed: false,
    remaining: 0,
    retryAfterSeconds: 7,
    capacity: 10,
  });
  const allowed = rateLimitHeaders({
    allowed: true,
    remaining: 3,
    retryAfterSeconds: 0,
    capacity: 10,
  });

  assert.equal(refused["Retry-After"], "7");
  assert.equal(refused["RateLimit-Limit"], "10");
  assert.equal(allowed["Retry-After"], undefined);
  assert.equal(allowed["RateLimit-Remaining"], "3");
});

Deno.test("prune_rate_limit_buckets() deletes only refilled buckets", async () => {
  await using database = await createTestDatabase();
  const projectId = await createProject(database.db, 2, 1);
  const check = {
    scope: "user" as const,
    key: "user-1",
    endpoint: ENDPOINT,
    projectId,
  };
  await takeRateLimitToken(database.db, check, T0);
  await takeRateLimitToken(database.db, { ...check, key: "user-2" }, at(10));

  const pruned = await pruneRateLimitBuckets(database.db, at(5));
  const left = await database.db.query<{ bucket_key: string }>(
    "select bucket_key from public.rate_limit_buckets",
  );

  assert.equal(pruned, 1);
  assert.deepEqual(left.map((row) => row.bucket_key), ["user-2"]);
});

Deno.test("take_rate_limit_token() keeps a project's bucket apart from the bucket without project", async () => {
  await using database = await createTestDatabase();
  const projectId = await createProject(database.db, 2, 0.5);
  const check = { scope: "user" as const, key: "user-1", endpoint: ENDPOINT };

  const inProject = [
    await takeRateLimitToken(database.db, { ...check, projectId }, T0),
    await takeRateLimitToken(database.db, { ...check, projectId }, T0),
    await takeRateLimitToken(database.db, { ...check, projectId }, T0),
  ];
  const outside = [
    await takeRateLimitToken(database.db, check, T0),
    await takeRateLimitToken(database.db, check, T0),
  ];

  assert.deepEqual(inProject.map((result) => result.allowed), [
    true,
    true,
    false,
  ]);
  assert.deepEqual(
    outside.map((result) => [result.allowed, result.remaining]),
    [
      [true, 29],
      [true, 28],
    ],
  );
  // Both buckets miss 2 tokens at 0.5 per second: full again 4 seconds later.
  const buckets = await database.db.query<
    { project_id: string | null; tokens: number; full_at: Date }
  >(
    `select project_id, tokens::float8 as tokens, full_at from public.rate_limit_buckets
     order by project_id nulls first`,
  );
  assert.deepEqual(
    buckets.map((row) => [row.project_id, row.tokens, row.full_at.getTime()]),
    [
      [null, 28, at(4).getTime()],
      [projectId, 0, at(4).getTime()],
    ],
  );
});
