/**
 * Client IP parsing: the accepted forms, their canonical text, the rejected
 * ones, that Postgres `inet` takes every accepted result, and what the
 * register endpoint writes for a malformed X-Forwarded-For.
 */
import assert from "node:assert/strict";
import { clientIp, parseIpAddress } from "../../shared/http/client_ip.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  deviceRequest,
  type Harness,
  readProblem,
  startHarness,
} from "./harness.ts";

/** Input and the canonical text parseIpAddress returns for it. */
const VALID: [string, string][] = [
  ["192.0.2.1", "192.0.2.1"],
  ["0.0.0.0", "0.0.0.0"],
  ["255.255.255.255", "255.255.255.255"],
  [" 198.51.100.7 ", "198.51.100.7"],
  ["192.0.2.1:443", "192.0.2.1"],
  ["::", "::"],
  ["::1", "::1"],
  ["2001:DB8::1", "2001:db8::1"],
  ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
  ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
  ["2001:db8::1:0:0:0:1", "2001:db8:0:1::1"],
  ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
  ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
  ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
  ["fe80::1", "fe80::1"],
  ["::ffff:192.0.2.1", "192.0.2.1"],
  ["::FFFF:c000:0201", "192.0.2.1"],
  ["64:ff9b::192.0.2.1", "64:ff9b::c000:201"],
  ["1:2:3:4:5:6:192.0.2.1", "1:2:3:4:5:6:c000:201"],
  ["[2001:db8::1]", "2001:db8::1"],
  ["[2001:db8::1]:8443", "2001:db8::1"],
];

const INVALID = [
  "",
  "   ",
  "::::",
  ":::",
  "ffff::ffff::1",
  ":1::",
  "1::2:",
  "1:2:3:4:5:6:7:8:9",
  "1::2:3:4:5:6:7:8",
  "1:2:3:4:5:6:7:8::",
  "00001::",
  "12345::",
  "g::1",
  "1.2.3",
  "10",
  "01.2.3.4",
  "1.2.3.256",
  "1.2.3.4.5",
  "0x1.2.3.4",
  "1.2.3.4/32",
  "2001:db8::/32",
  "1.2.3.4:",
  "1.2.3.4:65536",
  "1.2.3.4:http",
  "::1.2.3",
  "1.2.3.4::",
  "1:2:3:4:5:6:7:1.2.3.4",
  "fe80::1%eth0",
  "[fe80::1%25eth0]",
  "[::1",
  "[::1]x",
  "[::1]:",
  "[192.0.2.1]",
  "unknown",
  "192.0.2.1, 198.51.100.7",
  "a".repeat(100),
];

Deno.test("parseIpAddress() returns canonical text", () => {
  for (const [input, expected] of VALID) {
    assert.equal(parseIpAddress(input), expected, input);
  }
});

Deno.test("parseIpAddress() rejects malformed addresses", () => {
  for (const input of INVALID) {
    assert.equal(parseIpAddress(input), null, input);
  }
  assert.equal(parseIpAddress(null), null);
  assert.equal(parseIpAddress(undefined), null);
});

Deno.test("parseIpAddress() results round-trip through inet", async () => {
  await using database = await createTestDatabase();
  const outputs = VALID.map(([input]) => parseIpAddress(input)!);

  // The cast fails the statement if any output is not valid inet.
  const rows = await database.db.query<{ output: string; host: string }>(
    "select o as output, host(o::inet) as host from unnest($1::text[]) as o",
    [outputs],
  );

  assert.equal(rows.length, outputs.length);
  for (const row of rows) {
    assert.equal(parseIpAddress(row.host), row.output, row.host);
  }
});

Deno.test("clientIp() reads the first X-Forwarded-For entry", () => {
  const request = (headers: Record<string, string>) =>
    new Request("http://127.0.0.1/", { headers });

  assert.equal(
    clientIp(request({ "x-forwarded-for": "192.0.2.1, 198.51.100.7" })),
    "192.0.2.1",
  );
  assert.equal(
    clientIp(request({ "x-forwarded-for": "[2001:DB8::1]:443" })),
    "2001:db8::1",
  );
  assert.equal(
    clientIp(request({ "x-real-ip": "198.51.100.7" })),
    "198.51.100.7",
  );
  assert.equal(
    clientIp(request({
      "x-forwarded-for": "::::",
      "x-real-ip": "198.51.100.7",
    })),
    "198.51.100.7",
  );
  assert.equal(clientIp(request({ "x-forwarded-for": "::::" })), null);
  assert.equal(clientIp(request({ "x-real-ip": "ffff::ffff::1" })), null);
  assert.equal(clientIp(request({})), null);
});

interface AuditIpRow {
  outcome: string;
  error_code: string | null;
  client_ip: string | null;
}

async function auditRows(harness: Harness, deviceId: string) {
  return await harness.db.query<AuditIpRow>(
    `select outcome, error_code, host(client_ip) as client_ip
     from public.audit_log where target_id = $1 order by id`,
    [deviceId],
  );
}

async function ipBucketKeys(harness: Harness): Promise<string[]> {
  const rows = await harness.db.query<{ bucket_key: string }>(
    "select bucket_key from public.rate_limit_buckets where scope = 'ip' order by bucket_key",
  );
  return rows.map((row) => row.bucket_key);
}

Deno.test("register with malformed X-Forwarded-For is admitted", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);

  const response = await harness.call("nebula-register", "POST", "", {
    token: owner.token,
    body,
    headers: { "x-forwarded-for": "::::" },
  });

  assert.equal(response.status, 201, await response.clone().text());
  await response.body?.cancel();
  const rows = await auditRows(harness, body.deviceId);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].outcome, "allowed");
  assert.equal(rows[0].client_ip, null);
  assert.deepEqual(await ipBucketKeys(harness), []);
});

Deno.test("refusal with malformed X-Forwarded-For is audited", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const stranger = await harness.createUser("stranger");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);

  const response = await harness.call("nebula-register", "POST", "", {
    token: stranger.token,
    body,
    headers: { "x-forwarded-for": "ffff::ffff::1" },
  });

  assert.equal(response.status, 403);
  assert.equal((await readProblem(response)).code, "forbidden");
  const rows = await auditRows(harness, body.deviceId);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].outcome, "refused");
  assert.equal(rows[0].error_code, "forbidden");
  assert.equal(rows[0].client_ip, null);
  const errors = harness.logs.filter((line) => line.level === "error");
  assert.deepEqual(errors, []);
});

Deno.test("IP bucket is keyed on the parsed address", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  // A fixed clock, so the bucket refills nothing between the requests.
  harness.setNow(new Date());

  const spellings = ["2001:DB8::1", "[2001:db8:0::1]:443, 192.0.2.9"];
  for (const forwarded of spellings) {
    const { body } = await deviceRequest(project.id);
    const response = await harness.call("nebula-register", "POST", "", {
      token: owner.token,
      body,
      headers: { "x-forwarded-for": forwarded },
    });
    assert.equal(response.status, 201, await response.clone().text());
    await response.body?.cancel();

    const rows = await auditRows(harness, body.deviceId);
    assert.equal(rows[0].client_ip, "2001:db8::1", forwarded);
  }

  assert.deepEqual(await ipBucketKeys(harness), ["2001:db8::1"]);
  const [bucket] = await harness.db.query<{ tokens: string }>(
    "select tokens from public.rate_limit_buckets where scope = 'ip'",
  );
  const [policy] = await harness.db.query<{ capacity: number }>(
    "select capacity from public.rate_limit_policies where scope = 'ip' and project_id is null",
  );
  assert.equal(Number(bucket.tokens), policy.capacity - spellings.length);
});
