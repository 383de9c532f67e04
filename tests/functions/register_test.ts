/**
 * `nebula-register` in-process on real PostgreSQL, with Debian's
 * `nebula-cert` and `nebula` as the oracles for what it hands out.
 */
import assert from "node:assert/strict";
import { decodeBase64, toHex } from "../../shared/pki/base64.ts";
import { parseDevicePublicKey } from "../../shared/pki/keys.ts";
import {
  deviceRequest,
  type Harness,
  randomKek,
  readProblem,
  rowCounts,
  startHarness,
  type TestUser,
  unpackBundle,
} from "./harness.ts";
import { printCertificate } from "./support.ts";

async function run(command: string, args: string[], cwd?: string) {
  const output = await new Deno.Command(command, {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    success: output.success,
    text: new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr),
  };
}

/** Makes a key pair with `nebula-cert keygen`, as a device would. */
async function nebulaKeygen(dir: string) {
  const result = await run("nebula-cert", [
    "keygen",
    "-out-key",
    `${dir}/node.key`,
    "-out-pub",
    `${dir}/node.pub`,
  ]);
  assert.ok(result.success, result.text);
  return await Deno.readTextFile(`${dir}/node.pub`);
}

async function register(
  harness: Harness,
  user: TestUser,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
) {
  return await harness.call("nebula-register", "POST", "", {
    token: user.token,
    body,
    headers,
  });
}

Deno.test("register bundle passes nebula-cert and nebula", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const dir = await Deno.makeTempDir({ prefix: "vidsync-register-" });
  try {
    const publicKey = await nebulaKeygen(dir);
    const deviceId = crypto.randomUUID();

    const response = await register(harness, owner, {
      projectId: project.id,
      deviceId,
      deviceName: 'Colour grading: "suite" #2',
      publicKey,
    });
    assert.equal(response.status, 201);
    const body = await response.json();
    const names = await unpackBundle(decodeBase64(body.bundle), dir);

    assert.deepEqual(names.sort(), [
      "README.md",
      "ca.crt",
      "nebula.yml",
      "node.crt",
    ]);
    assert.equal(body.ip, "10.42.0.2");
    assert.equal(body.prefixLength, 24);
    assert.deepEqual(body.caFingerprints, [project.ca.fingerprint]);
    const verify = await run("nebula-cert", [
      "verify",
      "-ca",
      `${dir}/ca.crt`,
      "-crt",
      `${dir}/node.crt`,
    ]);
    assert.ok(verify.success, verify.text);
    const printed = await run("nebula-cert", [
      "print",
      "-json",
      "-path",
      `${dir}/node.crt`,
    ]);
    const certificate = JSON.parse(printed.text.split("\n")[0]);
    assert.equal(certificate.fingerprint, body.certificate.fingerprint);
    assert.deepEqual(certificate.details.ips, ["10.42.0.2/24"]);
    assert.equal(certificate.details.name, 'Colour grading: "suite" #2');
    assert.equal(certificate.details.issuer, project.ca.fingerprint);
    // The bundle's paths are relative, so nebula runs in the unpacked folder.
    const nebulaTest = await run(
      "nebula",
      ["-test", "-config", "nebula.yml"],
      dir,
    );
    assert.ok(nebulaTest.success, nebulaTest.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lighthouse register gets its reserved address", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const dir = await Deno.makeTempDir({ prefix: "vidsync-lighthouse-" });
  try {
    const publicKey = await nebulaKeygen(dir);

    const response = await register(harness, owner, {
      projectId: project.id,
      deviceId: crypto.randomUUID(),
      deviceName: "lighthouse",
      publicKey,
      lighthouse: true,
    });
    assert.equal(response.status, 201);
    const body = await response.json();
    await unpackBundle(decodeBase64(body.bundle), dir);

    assert.equal(body.ip, "10.42.0.1");
    assert.equal(body.isLighthouse, true);
    const config = await Deno.readTextFile(`${dir}/nebula.yml`);
    assert.match(config, /am_lighthouse: true/);
    // The bundle's paths are relative, so nebula runs in the unpacked folder.
    const nebulaTest = await run(
      "nebula",
      ["-test", "-config", "nebula.yml"],
      dir,
    );
    assert.ok(nebulaTest.success, nebulaTest.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("register again keeps the address and answers 200", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);

  const first = await register(harness, owner, body);
  const firstBody = await first.json();
  harness.setNow(new Date(Date.now() + 5000));
  const second = await register(harness, owner, body);
  const secondBody = await second.json();

  assert.equal(first.status, 201);
  assert.equal(second.status, 200);
  assert.equal(secondBody.ip, firstBody.ip);
  const [{ allocations }] = await harness.db.query<{ allocations: number }>(
    "select count(*)::int as allocations from public.nebula_ip_allocations where device_id = $1",
    [body.deviceId],
  );
  assert.equal(allocations, 1);
});

Deno.test("register with Accept application/zip returns the raw bundle", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const dir = await Deno.makeTempDir({ prefix: "vidsync-zip-" });
  try {
    const response = await register(harness, owner, body, {
      accept: "application/zip",
    });
    const bytes = new Uint8Array(await response.arrayBuffer());

    assert.equal(response.status, 201);
    assert.equal(response.headers.get("content-type"), "application/zip");
    assert.equal(response.headers.get("x-nebula-ip"), "10.42.0.2");
    assert.match(
      response.headers.get("x-nebula-fingerprint") ?? "",
      /^[0-9a-f]{64}$/,
    );
    assert.match(
      response.headers.get("access-control-expose-headers") ?? "",
      /x-nebula-ip/,
    );
    const names = await unpackBundle(bytes, dir);
    assert.equal(names.length, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("another user's device id is 409", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const member = await harness.createUser("member");
  const project = await harness.createProject(owner);
  await (await harness.call(
    "nebula-project",
    "POST",
    `/${project.id}/members`,
    { token: owner.token, body: { userId: member.id, role: "member" } },
  )).body?.cancel();
  const { body } = await deviceRequest(project.id);
  await (await register(harness, owner, body)).body?.cancel();
  const before = await rowCounts(harness.db);

  const response = await register(harness, member, {
    ...body,
    publicKey: (await deviceRequest(project.id)).body.publicKey,
  });

  assert.equal(response.status, 409);
  assert.equal(
    (await readProblem(response)).code,
    "device_owned_by_other_user",
  );
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("public key reused by second device is 409", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  await (await register(harness, owner, body)).body?.cancel();
  const before = await rowCounts(harness.db);

  const clone = await register(harness, owner, {
    ...body,
    deviceId: crypto.randomUUID(),
  });

  assert.equal(clone.status, 409);
  assert.equal((await readProblem(clone)).code, "public_key_in_use");
  assert.deepEqual(await rowCounts(harness.db), before);
  const again = await register(harness, owner, body);
  assert.equal(again.status, 200, "the key's own device stays idempotent");
  await again.body?.cancel();
});

Deno.test("/30 pool admits one device, then pool_exhausted", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner, {
    cidr: "10.9.0.0/30",
    lighthouses: [{ ip: "10.9.0.1", endpoints: ["203.0.113.9:4242"] }],
  });

  const first = await register(
    harness,
    owner,
    (await deviceRequest(project.id)).body,
  );
  const firstBody = await first.json();
  const before = await rowCounts(harness.db);
  const second = await register(
    harness,
    owner,
    (await deviceRequest(project.id)).body,
  );

  assert.equal(project.pool.total, 1);
  assert.equal(first.status, 201);
  assert.equal(firstBody.ip, "10.9.0.2");
  assert.equal(firstBody.prefixLength, 30);
  assert.equal(second.status, 409);
  const problem = await readProblem(second);
  assert.equal(problem.code, "pool_exhausted");
  assert.deepEqual(problem.pool, {
    total: 1,
    allocated: 1,
    quarantined: 0,
    free: 0,
  });
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("/28 pool exhausts after 13 devices with no 5xx", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner, {
    cidr: "10.8.0.0/28",
    lighthouses: [{ ip: "10.8.0.1", endpoints: ["203.0.113.8:4242"] }],
  });
  const statuses: number[] = [];
  const addresses = new Set<string>();

  for (let index = 0; index < 16; index++) {
    const response = await register(
      harness,
      owner,
      (await deviceRequest(project.id)).body,
    );
    statuses.push(response.status);
    const body = await response.json();
    if (response.status === 201) addresses.add(body.ip);
    else assert.equal(body.code, "pool_exhausted");
  }

  assert.equal(statuses.filter((status) => status === 201).length, 13);
  assert.equal(statuses.filter((status) => status === 409).length, 3);
  assert.equal(addresses.size, 13);
  assert.ok(!addresses.has("10.8.0.1"), "lighthouse address handed out");
});

Deno.test("register failing at signing rolls everything back", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const before = await rowCounts(harness.db);
  // A different key-encryption key cannot open the CA key, so signing
  // fails after the device row and the allocation were written.
  harness.deps.kek = randomKek();

  const response = await harness.call("nebula-register", "POST", "", {
    token: owner.token,
    body,
  });

  assert.equal(response.status, 500);
  const problem = await readProblem(response);
  assert.equal(problem.code, "internal_error");
  assert.ok(!/decrypt|kek|cipher|sql/i.test(problem.detail));
  assert.deepEqual(await rowCounts(harness.db), before);
  const errors = harness.logs.filter((line) => line.level === "error");
  assert.ok(errors.some((line) => line.function === "nebula-register"));
  assert.ok(errors.some((line) => line.deviceId === body.deviceId));
});

Deno.test("member cannot register a lighthouse", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const member = await harness.createUser("member");
  const project = await harness.createProject(owner);
  await (await harness.call(
    "nebula-project",
    "POST",
    `/${project.id}/members`,
    { token: owner.token, body: { userId: member.id, role: "member" } },
  )).body?.cancel();

  const response = await register(
    harness,
    member,
    (await deviceRequest(project.id, { lighthouse: true })).body,
  );

  assert.equal(response.status, 403);
  assert.equal((await readProblem(response)).code, "forbidden");
});

Deno.test("status shows certificate and CA expiry", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner, { caLifetimeDays: 90 });
  const { body } = await deviceRequest(project.id);
  const registered = await (await register(harness, owner, body)).json();

  const response = await harness.call(
    "nebula-status",
    "GET",
    `/${body.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );
  const status = await response.json();

  assert.equal(response.status, 200);
  assert.equal(status.ip, registered.ip);
  assert.equal(status.ownerId, owner.id);
  assert.equal(
    status.certificate.fingerprint,
    registered.certificate.fingerprint,
  );
  assert.equal(status.certificate.revokedAt, null);
  assert.equal(status.ca.fingerprint, project.ca.fingerprint);
  assert.equal(status.ca.notAfter, project.ca.notAfter);
  const days = (Date.parse(status.ca.notAfter) - Date.now()) / 86_400_000;
  assert.ok(days > 89, `CA expires in ${days} days`);
  assert.ok(days <= 90, `CA expires in ${days} days`);
});

Deno.test("release revokes certificate and frees device", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const registered = await (await register(harness, owner, body)).json();

  const response = await harness.call(
    "nebula-release",
    "POST",
    `/${body.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );
  const release = await response.json();
  const status = await harness.call(
    "nebula-status",
    "GET",
    `/${body.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );

  assert.equal(response.status, 200);
  assert.equal(release.ip, registered.ip);
  assert.deepEqual(release.revokedFingerprints, [
    registered.certificate.fingerprint,
  ]);
  assert.equal(release.quarantinedUntil, registered.certificate.notAfter);
  assert.equal(status.status, 404);
  assert.equal((await readProblem(status)).code, "device_not_found");
});

Deno.test("new key keeps ip, revokes old certificate", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const first = await (await register(harness, owner, body)).json();
  const newKey = (await deviceRequest(project.id)).body.publicKey;

  const second = await register(harness, owner, { ...body, publicKey: newKey });
  const secondBody = await second.json();

  assert.equal(second.status, 200);
  assert.equal(secondBody.ip, first.ip);
  assert.notEqual(
    secondBody.certificate.fingerprint,
    first.certificate.fingerprint,
  );
  const rows = await harness.db.query<
    { fingerprint: string; revoked: boolean; reason: string | null }
  >(
    `select fingerprint, revoked_at is not null as revoked, revocation_reason as reason
     from public.nebula_certificates where project_id = $1 and device_id = $2`,
    [project.id, body.deviceId],
  );
  const byFingerprint = new Map(rows.map((row) => [row.fingerprint, row]));
  assert.equal(rows.length, 2);
  assert.equal(byFingerprint.get(first.certificate.fingerprint)?.revoked, true);
  assert.equal(
    byFingerprint.get(first.certificate.fingerprint)?.reason,
    "key_changed",
  );
  assert.equal(
    byFingerprint.get(secondBody.certificate.fingerprint)?.revoked,
    false,
  );
  // The same key in the same second would sign to the revoked certificate's bytes.
  harness.setNow(new Date(Date.now() + 2000));
  const oldKeyAgain = await register(harness, owner, body);
  assert.equal(oldKeyAgain.status, 200, "the device may switch back");
  assert.equal((await oldKeyAgain.json()).ip, first.ip);
});

Deno.test("expired CA is 409 and writes nothing", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner, { caLifetimeDays: 1 });
  const { body } = await deviceRequest(project.id);
  const before = await rowCounts(harness.db);
  harness.setNow(new Date(Date.parse(project.ca.notAfter) + 60_000));

  const response = await register(harness, owner, body);

  assert.equal(response.status, 409);
  assert.equal((await readProblem(response)).code, "ca_expired");
  assert.deepEqual(await rowCounts(harness.db), before);
  const [left] = await harness.db.query<Record<string, number>>(
    `select (select count(*)::int from public.user_devices where id = $1) as devices,
       (select count(*)::int from public.nebula_ip_pool where device_id = $1) as pool,
       (select count(*)::int from public.nebula_ip_allocations where device_id = $1) as allocations,
       (select count(*)::int from public.nebula_certificates where device_id = $1) as certificates`,
    [body.deviceId],
  );
  assert.deepEqual(left, {
    devices: 0,
    pool: 0,
    allocations: 0,
    certificates: 0,
  });
});

Deno.test("zip and base64 bundles are identical", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  // Both calls inside one wall-clock second: certificates carry whole seconds.
  const second = Math.floor(Date.now() / 1000) * 1000;
  harness.setNow(new Date(second + 100));

  const asJson = await register(harness, owner, body);
  const jsonBody = await asJson.json();
  harness.setNow(new Date(second + 900));
  const asZip = await register(harness, owner, body, {
    accept: "application/zip",
  });
  const zipBytes = new Uint8Array(await asZip.arrayBuffer());

  assert.equal(asJson.status, 201);
  assert.equal(asZip.status, 200);
  assert.equal(asZip.headers.get("content-type"), "application/zip");
  assert.equal(asZip.headers.get("x-nebula-ip"), jsonBody.ip);
  assert.equal(
    asZip.headers.get("x-nebula-fingerprint"),
    jsonBody.certificate.fingerprint,
  );
  assert.deepEqual(zipBytes, decodeBase64(jsonBody.bundle));
});

Deno.test("private key as publicKey is 400, not echoed", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body, privatePem } = await deviceRequest(project.id);
  const before = await rowCounts(harness.db);

  const response = await register(harness, owner, {
    ...body,
    publicKey: privatePem,
  });
  const text = await response.text();

  assert.equal(response.status, 400);
  assert.equal(
    response.headers.get("content-type"),
    "application/problem+json",
  );
  const problem = JSON.parse(text);
  assert.equal(problem.code, "invalid_public_key");
  assert.ok(
    problem.errors.some((issue: { field: string }) =>
      issue.field === "publicKey"
    ),
  );
  const secret = privatePem.split("\n").filter((line) =>
    !line.startsWith("-----") && line.length > 0
  ).join("");
  for (let start = 0; start + 8 <= secret.length; start += 4) {
    assert.ok(
      !text.includes(secret.slice(start, start + 8)),
      "the response repeats part of the private key",
    );
  }
  assert.ok(!JSON.stringify(harness.logs).includes(secret.slice(0, 16)));
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("openssl PUBLIC KEY PEM is 400", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, [
    "deriveBits",
  ]) as CryptoKeyPair;
  const spki = new Uint8Array(
    await crypto.subtle.exportKey("spki", pair.publicKey),
  );
  const pem = `-----BEGIN PUBLIC KEY-----\n${
    btoa(String.fromCharCode(...spki))
  }\n-----END PUBLIC KEY-----\n`;

  const response = await register(harness, owner, { ...body, publicKey: pem });

  assert.equal(response.status, 400);
  const problem = await readProblem(response);
  assert.equal(problem.code, "invalid_public_key");
  assert.match(problem.detail, /nebula-cert keygen/);
  assert.ok(problem.errors?.some((issue) => issue.field === "publicKey"));
});

Deno.test("CRLF public key is signed unchanged", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const dir = await Deno.makeTempDir({ prefix: "vidsync-crlf-" });
  try {
    const publicKey = await nebulaKeygen(dir);
    const crlf = publicKey.replaceAll("\r\n", "\n").replaceAll("\n", "\r\n");
    const { body } = await deviceRequest(project.id, { publicKey: crlf });

    const response = await register(harness, owner, body);
    assert.equal(response.status, 201, await response.clone().text());
    const registered = await response.json();
    await unpackBundle(decodeBase64(registered.bundle), dir);
    const certificate = await printCertificate(`${dir}/node.crt`);

    const keyBase64 = publicKey.split("\n")[1];
    assert.equal(
      certificate.details.publicKey,
      toHex(decodeBase64(keyBase64)),
    );
    const nebulaTest = await run(
      "nebula",
      ["-test", "-config", "nebula.yml"],
      dir,
    );
    assert.ok(nebulaTest.success, nebulaTest.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a device cannot switch to or from lighthouse by registering again", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  assert.equal((await register(harness, owner, body)).status, 201);
  const before = await rowCounts(harness.db);

  const response = await register(harness, owner, {
    ...body,
    lighthouse: true,
  });

  assert.equal(response.status, 409);
  const problem = await readProblem(response);
  assert.equal(problem.code, "device_role_mismatch");
  assert.match(problem.detail, /not as a lighthouse/);
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("a second lighthouse device finds no free lighthouse", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const first = await deviceRequest(project.id, { lighthouse: true });
  assert.equal((await register(harness, owner, first.body)).status, 201);
  const before = await rowCounts(harness.db);

  const second = await deviceRequest(project.id, { lighthouse: true });
  const response = await register(harness, owner, second.body);

  assert.equal(response.status, 409);
  assert.equal((await readProblem(response)).code, "no_free_lighthouse");
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("registering again in the second of a revocation is refused", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  // A frozen clock: equal inputs sign to equal bytes, so switching back to
  // the first key makes the certificate that the key change just revoked.
  harness.setNow(new Date(Math.floor(Date.now() / 1000) * 1000));
  const { body } = await deviceRequest(project.id);
  const first = await register(harness, owner, body);
  assert.equal(first.status, 201);
  const newKey = (await deviceRequest(project.id)).body.publicKey;
  const second = await register(harness, owner, { ...body, publicKey: newKey });
  assert.equal(second.status, 200);
  const before = await rowCounts(harness.db);

  const response = await register(harness, owner, body);

  assert.equal(response.status, 409);
  assert.equal((await readProblem(response)).code, "retry_later");
  assert.deepEqual(await rowCounts(harness.db), before);
});

/** Creates a project with an owner and a member, and revokes the member's device. */
async function revokedMemberDevice(harness: Harness) {
  const owner = await harness.createUser("owner");
  const member = await harness.createUser("member");
  const project = await harness.createProject(owner);
  const added = await harness.call(
    "nebula-project",
    "POST",
    `/${project.id}/members`,
    { token: owner.token, body: { userId: member.id, role: "member" } },
  );
  assert.ok(added.ok, await added.text());
  const { body } = await deviceRequest(project.id);
  const registered = await register(harness, member, body);
  assert.equal(registered.status, 201);
  const first = await registered.json();
  const revoke = await harness.call("nebula-revoke", "POST", "", {
    token: owner.token,
    body: { projectId: project.id, deviceId: body.deviceId, reason: "stolen" },
  });
  assert.equal(revoke.status, 200);
  // Past the second of the revocation, so nothing signs to revoked bytes.
  harness.setNow(new Date(Date.now() + 2000));
  return { owner, member, project, body, first };
}

async function refusalCount(harness: Harness, deviceId: string) {
  const [row] = await harness.db.query<{ count: number }>(
    `select count(*)::int as count from public.audit_log
     where action = 'device.register' and target_id = $1
       and outcome = 'refused' and error_code = 'certificate_revoked'`,
    [deviceId],
  );
  return row.count;
}

Deno.test("register refuses a device revoked by an admin", async () => {
  await using harness = await startHarness();
  const { member, project, body, first } = await revokedMemberDevice(harness);
  const before = await rowCounts(harness.db);
  const newKey = (await deviceRequest(project.id)).body.publicKey;

  const sameKey = await register(harness, member, body);
  const otherKey = await register(harness, member, {
    ...body,
    publicKey: newKey,
  });

  assert.equal(sameKey.status, 403);
  assert.equal((await readProblem(sameKey)).code, "certificate_revoked");
  assert.equal(otherKey.status, 403);
  const otherKeyProblem = await readProblem(otherKey);
  assert.equal(otherKeyProblem.code, "certificate_revoked");
  assert.match(otherKeyProblem.detail, /release the device/);
  assert.deepEqual(await rowCounts(harness.db), before);
  assert.equal(await refusalCount(harness, body.deviceId), 2);
  const [device] = await harness.db.query<{ ip: string; key_changed: boolean }>(
    `select host(nebula_ip) as ip, public_key <> $3::bytea as key_changed
     from public.user_devices where project_id = $1 and id = $2`,
    [project.id, body.deviceId, parseDevicePublicKey(body.publicKey)],
  );
  assert.equal(device.ip, first.ip);
  assert.equal(device.key_changed, false, "the stored key is unchanged");
});

Deno.test("register refuses a revoked key under a new device id", async () => {
  await using harness = await startHarness();
  const { owner, member, body } = await revokedMemberDevice(harness);
  const before = await rowCounts(harness.db);
  const newDevice = { ...body, deviceId: crypto.randomUUID() };

  const byMember = await register(harness, member, newDevice);
  const byOwner = await register(harness, owner, {
    ...newDevice,
    deviceId: crypto.randomUUID(),
  });

  assert.equal(byMember.status, 403);
  assert.equal((await readProblem(byMember)).code, "certificate_revoked");
  assert.equal(byOwner.status, 403);
  assert.equal((await readProblem(byOwner)).code, "certificate_revoked");
  assert.deepEqual(await rowCounts(harness.db), before);
  assert.equal(await refusalCount(harness, newDevice.deviceId), 1);
});

Deno.test("revoked device rejoins after release with new key", async () => {
  await using harness = await startHarness();
  const { member, project, body, first } = await revokedMemberDevice(harness);
  // The device's owner is a plain member, and may release it.
  const release = await harness.call(
    "nebula-release",
    "POST",
    `/${body.deviceId}?projectId=${project.id}`,
    { token: member.token },
  );
  assert.equal(release.status, 200);

  const sameKey = await register(harness, member, body);
  const newKey = (await deviceRequest(project.id)).body.publicKey;
  const rejoined = await register(harness, member, {
    ...body,
    publicKey: newKey,
  });

  assert.equal(sameKey.status, 403, "the revoked key stays out");
  assert.equal((await readProblem(sameKey)).code, "certificate_revoked");
  assert.equal(rejoined.status, 201);
  const rejoinedBody = await rejoined.json();
  assert.notEqual(rejoinedBody.ip, first.ip, "the old address is quarantined");
  assert.notEqual(
    rejoinedBody.certificate.fingerprint,
    first.certificate.fingerprint,
  );
});

Deno.test("released device registers again with its key", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  assert.equal((await register(harness, owner, body)).status, 201);
  const release = await harness.call(
    "nebula-release",
    "POST",
    `/${body.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );
  assert.equal(release.status, 200);
  harness.setNow(new Date(Date.now() + 2000));

  const again = await register(harness, owner, body);

  assert.equal(again.status, 201, "a release is no revocation of the key");
});

Deno.test("renew refuses a revoked key on another device", async () => {
  await using harness = await startHarness();
  const { member, project, body } = await revokedMemberDevice(harness);
  // Released and registered with a new key, the revoked device no longer
  // holds the revoked key, so only the revocation keeps it out.
  const release = await harness.call(
    "nebula-release",
    "POST",
    `/${body.deviceId}?projectId=${project.id}`,
    { token: member.token },
  );
  assert.equal(release.status, 200);
  const newKey = (await deviceRequest(project.id)).body.publicKey;
  const rejoined = await register(harness, member, {
    ...body,
    publicKey: newKey,
  });
  assert.equal(rejoined.status, 201);
  const other = (await deviceRequest(project.id)).body;
  assert.equal((await register(harness, member, other)).status, 201);
  const before = await rowCounts(harness.db);

  const response = await harness.call("nebula-renew", "POST", "", {
    token: member.token,
    body: {
      projectId: project.id,
      deviceId: other.deviceId,
      publicKey: body.publicKey,
    },
  });

  assert.equal(response.status, 403);
  assert.equal((await readProblem(response)).code, "certificate_revoked");
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("revoke rejects reasons the service records itself", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  assert.equal((await register(harness, owner, body)).status, 201);
  const before = await rowCounts(harness.db);

  const reasons = [
    "key_changed",
    "released",
    "reclaimed",
    "KEY_CHANGED",
    " Released ",
    "\uff52eleased",
  ];
  for (const reason of reasons) {
    const response = await harness.call("nebula-revoke", "POST", "", {
      token: owner.token,
      body: { projectId: project.id, deviceId: body.deviceId, reason },
    });

    assert.equal(response.status, 400, reason);
    const problem = await readProblem(response);
    assert.equal(problem.code, "invalid_input");
    assert.equal(problem.errors?.[0].field, "reason");
  }
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("six lighthouse registrations share three lighthouses", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner, {
    lighthouses: ["10.42.0.1", "10.42.0.2", "10.42.0.3"].map((ip, index) => ({
      ip,
      endpoints: [`198.51.100.${10 + index}:4242`],
    })),
  });
  await harness.db.query(
    `insert into public.rate_limit_policies
       (project_id, scope, endpoint, capacity, refill_per_second)
     values ($1, 'user', '*', 1000, 100), ($1, 'ip', '*', 1000, 100)`,
    [project.id],
  );
  const bodies = await Promise.all(
    Array.from(
      { length: 6 },
      async () => (await deviceRequest(project.id, { lighthouse: true })).body,
    ),
  );

  const responses = await Promise.all(
    bodies.map((body) => register(harness, owner, body)),
  );

  const admitted = responses.filter((response) => response.status === 201);
  const addresses = await Promise.all(
    admitted.map(async (response) => (await response.json()).ip),
  );
  assert.deepEqual(addresses.sort(), ["10.42.0.1", "10.42.0.2", "10.42.0.3"]);
  const refused = responses.filter((response) => response.status !== 201);
  const codes = await Promise.all(
    refused.map(async (response) => (await readProblem(response)).code),
  );
  assert.deepEqual(codes, [
    "no_free_lighthouse",
    "no_free_lighthouse",
    "no_free_lighthouse",
  ]);
});

Deno.test("release timed before the allocation succeeds", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  const { body } = await deviceRequest(project.id);
  const releaseTime = new Date(Math.floor(Date.now() / 1000) * 1000);
  // A registration that locked the device first and stamped a later time.
  harness.setNow(new Date(releaseTime.getTime() + 5000));
  assert.equal((await register(harness, owner, body)).status, 201);
  harness.setNow(releaseTime);

  const release = await harness.call(
    "nebula-release",
    "POST",
    `/${body.deviceId}?projectId=${project.id}`,
    { token: owner.token },
  );

  assert.equal(release.status, 200, await release.clone().text());
  const [allocation] = await harness.db.query<
    { allocated_at: Date; released_at: Date | null }
  >(
    `select allocated_at, released_at from public.nebula_ip_allocations
     where project_id = $1 and device_id = $2`,
    [project.id, body.deviceId],
  );
  assert.equal(
    allocation.released_at?.getTime(),
    allocation.allocated_at.getTime(),
  );
});

Deno.test("lighthouse moving to another address is 409", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner, {
    lighthouses: ["10.42.0.1", "10.42.0.2"].map((ip) => ({
      ip,
      endpoints: ["198.51.100.10:4242"],
    })),
  });
  const { body } = await deviceRequest(project.id, {
    lighthouse: true,
    lighthouseIp: "10.42.0.1",
  });
  assert.equal((await register(harness, owner, body)).status, 201);
  const before = await rowCounts(harness.db);

  const response = await register(harness, owner, {
    ...body,
    lighthouseIp: "10.42.0.2",
  });

  assert.equal(response.status, 409);
  const problem = await readProblem(response);
  assert.equal(problem.code, "device_has_address");
  assert.match(problem.detail, /release the device first/);
  assert.match(problem.detail, /lighthouse 10\.42\.0\.2/);
  assert.doesNotMatch(problem.detail, /\/24/, "no raw SQL message");
  assert.deepEqual(await rowCounts(harness.db), before);
});
