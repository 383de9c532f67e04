/** RateLimit headers on admitted and on rate-limited responses. */
import assert from "node:assert/strict";
import { deviceRequest, readProblem, startHarness } from "./harness.ts";

const CAPACITY = 2;
const REFILL_PER_SECOND = 0.001;

Deno.test("429 carries the RateLimit headers", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  // The user bucket is the smallest, so its numbers fill the headers.
  await harness.db.query(
    `insert into public.rate_limit_policies (project_id, scope, endpoint, capacity, refill_per_second)
     values ($1, 'user', 'nebula-register', $2, $3)`,
    [project.id, CAPACITY, REFILL_PER_SECOND],
  );
  harness.setNow(new Date());
  const { body } = await deviceRequest(project.id);
  const register = () =>
    harness.call("nebula-register", "POST", "", { token: owner.token, body });

  for (let index = 0; index < CAPACITY; index++) {
    const admitted = await register();
    assert.ok(admitted.status < 300, await admitted.clone().text());
    await admitted.body?.cancel();
    assert.equal(admitted.headers.get("ratelimit-limit"), String(CAPACITY));
    assert.equal(
      admitted.headers.get("ratelimit-remaining"),
      String(CAPACITY - index - 1),
    );
  }
  const limited = await register();

  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get("ratelimit-limit"), String(CAPACITY));
  assert.equal(limited.headers.get("ratelimit-remaining"), "0");
  assert.equal(
    limited.headers.get("retry-after"),
    String(Math.ceil(1 / REFILL_PER_SECOND)),
  );
  assert.match(
    limited.headers.get("access-control-expose-headers") ?? "",
    /ratelimit-limit, ratelimit-remaining/,
  );
  const problem = await readProblem(limited);
  assert.equal(problem.code, "rate_limited");
});
