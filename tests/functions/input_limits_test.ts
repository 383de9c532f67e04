/** Inputs a signed-in user could abuse: huge pools, degenerate keys, spoofing names. */
import assert from "node:assert/strict";
import { decodePemBlocks, encodePem, PEM_TYPES } from "../../shared/pki/pem.ts";
import {
  deviceRequest,
  readProblem,
  rowCounts,
  startHarness,
} from "./harness.ts";

Deno.test("nebula-project rejects prefixes shorter than /16", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser();
  const before = await rowCounts(harness.db);

  for (const cidr of ["10.0.0.0/8", "10.0.0.0/15"]) {
    const response = await harness.call("nebula-project", "POST", "", {
      token: owner.token,
      body: {
        name: "too big",
        cidr,
        lighthouses: [{ ip: "10.0.0.1", endpoints: ["192.0.2.1:4242"] }],
      },
    });
    const problem = await readProblem(response);

    assert.equal(response.status, 400, cidr);
    assert.equal(problem.code, "invalid_input", cidr);
    assert.equal(problem.errors?.[0].field, "cidr", cidr);
  }
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("nebula-register rejects degenerate X25519 keys", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser();
  const project = await harness.createProject(owner);

  for (const first of [0, 1]) {
    const raw = new Uint8Array(32);
    raw[0] = first;
    const { body } = await deviceRequest(project.id, {
      publicKey: encodePem(PEM_TYPES.x25519Public, raw),
    });
    const response = await harness.call("nebula-register", "POST", "", {
      token: owner.token,
      body,
    });
    const problem = await readProblem(response);

    assert.equal(response.status, 400, `key starting ${first}`);
    assert.equal(problem.code, "invalid_public_key", `key starting ${first}`);
  }
});

Deno.test("nebula-register rejects non-canonical X25519 keys", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser();
  const project = await harness.createProject(owner);
  const first = await deviceRequest(project.id);
  const admitted = await harness.call("nebula-register", "POST", "", {
    token: owner.token,
    body: first.body,
  });
  assert.equal(admitted.status, 201);
  await admitted.body?.cancel();
  const canonical = decodePemBlocks(first.body.publicKey)[0].bytes;
  const highBit = canonical.slice();
  highBit[31] |= 0x80;
  // p + 2 with p = 2^255 - 19: X25519 reads it as u = 2.
  const aboveP = new Uint8Array(32).fill(0xff);
  aboveP[0] = 0xef;
  aboveP[31] = 0x7f;
  const cases: [string, Uint8Array][] = [
    ["registered key with bit 255 set", highBit],
    ["value p + 2", aboveP],
  ];
  const devices = () =>
    harness.db.query(
      "select id, public_key, host(nebula_ip) as ip from public.user_devices order by id",
    );
  const beforeCounts = await rowCounts(harness.db);
  const beforeDevices = await devices();

  for (const [label, raw] of cases) {
    const { body } = await deviceRequest(project.id, {
      publicKey: encodePem(PEM_TYPES.x25519Public, raw),
    });
    const response = await harness.call("nebula-register", "POST", "", {
      token: owner.token,
      body,
    });
    const problem = await readProblem(response);

    assert.equal(response.status, 400, label);
    assert.equal(problem.code, "invalid_public_key", label);
    assert.match(problem.detail, /not a canonical X25519 encoding/, label);
    assert.equal(problem.errors?.[0].field, "publicKey", label);
  }
  assert.deepEqual(await rowCounts(harness.db), beforeCounts);
  assert.deepEqual(await devices(), beforeDevices);
});

Deno.test("nebula-register rejects text around the key and spoofing names", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser();
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const cases: [string, Record<string, unknown>, string][] = [
    [
      "text before the key",
      { publicKey: `hello\n${body.publicKey}` },
      "invalid_public_key",
    ],
    [
      "text after the key",
      { publicKey: `${body.publicKey}junk` },
      "invalid_public_key",
    ],
    [
      "right-to-left override",
      { deviceName: "\u202egnp.exe" },
      "invalid_input",
    ],
    ["zero-width space", { deviceName: "edit\u200bsuite" }, "invalid_input"],
    ["line separator", { deviceName: "edit\u2028suite" }, "invalid_input"],
    [
      "lighthouseIp without lighthouse",
      { lighthouseIp: "10.42.0.1" },
      "invalid_input",
    ],
  ];

  for (const [label, change, code] of cases) {
    const response = await harness.call("nebula-register", "POST", "", {
      token: owner.token,
      body: { ...body, ...change },
    });
    const problem = await readProblem(response);

    assert.equal(response.status, 400, label);
    assert.equal(problem.code, code, label);
  }
  const [{ count }] = await harness.db.query<{ count: number }>(
    "select count(*)::int as count from public.user_devices where project_id = $1",
    [project.id],
  );
  assert.equal(count, 0);
});
