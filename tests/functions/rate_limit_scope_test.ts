/**
 * Which caller a rate-limit bucket belongs to: requests from one user must
 * not empty the buckets another user's requests draw from.
 */
import assert from "node:assert/strict";
import { deviceRequest, readProblem, startHarness } from "./harness.ts";

// Default device policy: 20 tokens, refilled at 0.2 per second.
const DEVICE_CAPACITY = 20;

Deno.test("stranger cannot drain another user's device bucket", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const stranger = await harness.createUser("stranger");
  const project = await harness.createProject(owner);
  // A fixed clock, so no bucket refills during the test.
  harness.setNow(new Date());
  const { body } = await deviceRequest(project.id);
  const register = async (token: string, ip: string) =>
    await harness.call("nebula-register", "POST", "", {
      token,
      body,
      headers: { "x-forwarded-for": ip },
    });

  // One more request than the device bucket holds, each from its own IP so
  // that only the device and user buckets are shared.
  const statuses: number[] = [];
  for (let index = 0; index <= DEVICE_CAPACITY; index++) {
    const response = await register(stranger.token, `192.0.2.${index + 1}`);
    statuses.push(response.status);
    await response.body?.cancel();
  }

  // The stranger's own device and user buckets still apply to them.
  assert.deepEqual(
    statuses.slice(0, DEVICE_CAPACITY),
    new Array(DEVICE_CAPACITY).fill(403),
  );
  assert.equal(statuses[DEVICE_CAPACITY], 429);
  const response = await register(owner.token, "198.51.100.7");
  assert.equal(response.status, 201, await response.clone().text());
  await response.body?.cancel();
});

Deno.test("own requests still exhaust the device bucket", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  harness.setNow(new Date());
  const { body } = await deviceRequest(project.id);

  const statuses: number[] = [];
  for (let index = 0; index <= DEVICE_CAPACITY; index++) {
    const response = await harness.call("nebula-register", "POST", "", {
      token: owner.token,
      body,
      headers: { "x-forwarded-for": `192.0.2.${index + 1}` },
    });
    statuses.push(response.status);
    if (response.status === 429) {
      assert.equal((await readProblem(response)).code, "rate_limited");
    } else {
      await response.body?.cancel();
    }
  }

  assert.equal(statuses[0], 201);
  assert.deepEqual(
    statuses.slice(1, DEVICE_CAPACITY),
    new Array(DEVICE_CAPACITY - 1).fill(200),
  );
  assert.equal(statuses[DEVICE_CAPACITY], 429);
  const keys = await harness.db.query<{ bucket_key: string }>(
    "select bucket_key from public.rate_limit_buckets where scope = 'device'",
  );
  assert.deepEqual(keys.map((row) => row.bucket_key), [
    `${owner.id}/${body.deviceId}`,
  ]);
});
