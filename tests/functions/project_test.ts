/** `nebula-project` in-process on real PostgreSQL: setup checks, read back, lighthouses, members. */
import assert from "node:assert/strict";
import {
  readProblem,
  rowCounts,
  startHarness,
  type TestUser,
} from "./harness.ts";
import type { Harness } from "./harness.ts";

function setup(
  harness: Harness,
  owner: TestUser,
  body: Record<string, unknown>,
) {
  return harness.call("nebula-project", "POST", "", {
    token: owner.token,
    body: { name: "Feature", cidr: "10.50.0.0/24", ...body },
  });
}

Deno.test("project setup creates CA, owner membership and a pool without lighthouses", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");

  const project = await harness.createProject(owner, {
    cidr: "10.60.0.0/24",
    lighthouses: [
      { ip: "10.60.0.1", endpoints: ["203.0.113.1:4242"] },
      { ip: "10.60.0.254", endpoints: ["lh2.example.net:4243"] },
    ],
    caLifetimeDays: 400,
  });

  assert.equal(project.cidr, "10.60.0.0/24");
  assert.deepEqual(project.pool, {
    total: 252,
    allocated: 0,
    quarantined: 0,
    free: 252,
  });
  assert.match(project.ca.fingerprint, /^[0-9a-f]{64}$/);
  const days = (Date.parse(project.ca.notAfter) -
    Date.parse(project.ca.notBefore)) / 86_400_000;
  assert.equal(days, 400);
  const [keyRow] = await harness.db.query<{ sealed: number }>(
    "select length(encrypted_private_key)::int as sealed from public.nebula_cas where project_id = $1",
    [project.id],
  );
  assert.ok(keyRow.sealed > 32, "the CA key is stored sealed");
  const reserved = await harness.db.query(
    "select 1 from public.nebula_ip_pool where project_id = $1 and host(ip) in ('10.60.0.1', '10.60.0.254')",
    [project.id],
  );
  assert.equal(reserved.length, 0);
  const read = await harness.call("nebula-project", "GET", `/${project.id}`, {
    token: owner.token,
  });
  const view = await read.json();
  assert.equal(view.role, "owner");
  assert.equal(view.ca.notAfter, project.ca.notAfter);
  assert.equal(view.lighthouses.length, 2);
});

Deno.test("project setup rejects bad lighthouses naming the field", async (t) => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const cases: {
    name: string;
    lighthouses: unknown;
    cidr?: string;
    field: string;
  }[] = [
    {
      name: "overlay ip outside the network",
      lighthouses: [{ ip: "10.50.1.1", endpoints: ["203.0.113.7:4242"] }],
      field: "lighthouses.0.ip",
    },
    {
      name: "public address as overlay ip",
      lighthouses: [{ ip: "203.0.113.7", endpoints: ["203.0.113.7:4242"] }],
      field: "lighthouses.0.ip",
    },
    {
      name: "network address",
      lighthouses: [{ ip: "10.50.0.0", endpoints: ["203.0.113.7:4242"] }],
      field: "lighthouses.0.ip",
    },
    {
      name: "broadcast address",
      lighthouses: [{ ip: "10.50.0.255", endpoints: ["203.0.113.7:4242"] }],
      field: "lighthouses.0.ip",
    },
    {
      name: "no endpoint",
      lighthouses: [{ ip: "10.50.0.1", endpoints: [] }],
      field: "lighthouses.0.endpoints",
    },
    {
      name: "endpoint without port",
      lighthouses: [{ ip: "10.50.0.1", endpoints: ["203.0.113.7"] }],
      field: "lighthouses.0.endpoints.0",
    },
    {
      name: "port 0",
      lighthouses: [{ ip: "10.50.0.1", endpoints: ["203.0.113.7:0"] }],
      field: "lighthouses.0.endpoints.0",
    },
    {
      name: "port 65536",
      lighthouses: [{ ip: "10.50.0.1", endpoints: ["203.0.113.7:65536"] }],
      field: "lighthouses.0.endpoints.0",
    },
    {
      name: "endpoints on two ports",
      lighthouses: [{
        ip: "10.50.0.1",
        endpoints: ["203.0.113.7:4242", "lh.example.net:5000"],
      }],
      field: "lighthouses.0.endpoints",
    },
    {
      name: "second lighthouse wrong",
      lighthouses: [
        { ip: "10.50.0.1", endpoints: ["203.0.113.7:4242"] },
        { ip: "192.168.1.1", endpoints: ["203.0.113.8:4242"] },
      ],
      field: "lighthouses.1.ip",
    },
    {
      name: "no lighthouse",
      lighthouses: [],
      field: "lighthouses",
    },
    {
      name: "prefix longer than /30",
      cidr: "10.50.0.0/31",
      lighthouses: [{ ip: "10.50.0.1", endpoints: ["203.0.113.7:4242"] }],
      field: "cidr",
    },
    {
      name: "host bits set",
      cidr: "10.50.0.7/24",
      lighthouses: [{ ip: "10.50.0.1", endpoints: ["203.0.113.7:4242"] }],
      field: "cidr",
    },
  ];
  const before = await rowCounts(harness.db);

  for (const entry of cases) {
    await t.step(entry.name, async () => {
      const response = await setup(harness, owner, {
        lighthouses: entry.lighthouses,
        ...(entry.cidr ? { cidr: entry.cidr } : {}),
      });

      assert.equal(response.status, 400);
      const problem = await readProblem(response);
      assert.equal(problem.code, "invalid_input");
      const fields = problem.errors?.map((issue) => issue.field) ?? [];
      assert.ok(
        fields.includes(entry.field),
        `fields ${fields.join(", ")} do not name ${entry.field}`,
      );
    });
  }
  assert.deepEqual(await rowCounts(harness.db), before);
});

Deno.test("owner changes lighthouses; the new address leaves the pool", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);

  const response = await harness.call(
    "nebula-project",
    "PATCH",
    `/${project.id}`,
    {
      token: owner.token,
      body: {
        lighthouses: [
          { ip: "10.42.0.1", endpoints: ["198.51.100.10:4242"] },
          { ip: "10.42.0.9", endpoints: ["198.51.100.19:4242"] },
        ],
      },
    },
  );
  const view = await response.json();

  assert.equal(response.status, 200);
  assert.deepEqual(
    view.lighthouses.map((lighthouse: { ip: string }) => lighthouse.ip),
    ["10.42.0.1", "10.42.0.9"],
  );
  assert.equal(view.pool.total, project.pool.total - 1);
});

Deno.test("last owner cannot be removed", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);

  const response = await harness.call(
    "nebula-project",
    "DELETE",
    `/${project.id}/members/${owner.id}`,
    { token: owner.token },
  );

  assert.equal(response.status, 409);
  assert.equal((await readProblem(response)).code, "last_owner");
});

Deno.test("admin cannot make an owner", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const admin = await harness.createUser("admin");
  const newcomer = await harness.createUser("newcomer");
  const project = await harness.createProject(owner);
  await (await harness.call(
    "nebula-project",
    "POST",
    `/${project.id}/members`,
    {
      token: owner.token,
      body: { userId: admin.id, role: "admin" },
    },
  )).body?.cancel();

  const response = await harness.call(
    "nebula-project",
    "POST",
    `/${project.id}/members`,
    { token: admin.token, body: { userId: newcomer.id, role: "owner" } },
  );

  assert.equal(response.status, 403);
  assert.equal((await readProblem(response)).code, "forbidden");
});

Deno.test("CA bundle is public PEM and unknown project is 404", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);

  const response = await harness.call(
    "nebula-ca",
    "GET",
    `?projectId=${project.id}`,
  );
  const pem = await response.text();
  const missing = await harness.call(
    "nebula-ca",
    "GET",
    `?projectId=${crypto.randomUUID()}`,
  );

  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/x-pem-file");
  assert.match(pem, /^-----BEGIN NEBULA CERTIFICATE-----\n/);
  assert.ok(!/PRIVATE KEY/.test(pem));
  assert.equal(missing.status, 404);
  assert.equal((await readProblem(missing)).code, "project_not_found");
});
