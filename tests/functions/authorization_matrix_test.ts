/**
 * Every endpoint called by every kind of caller, each cell on a project of
 * its own: the status must match the table, and a refused call must leave
 * the database as it was.
 */
import assert from "node:assert/strict";
import {
  deviceRequest,
  type Harness,
  type ProjectView,
  rowCounts,
  startHarness,
  type TestUser,
} from "./harness.ts";

const CALLERS = [
  "anonymous",
  "other user",
  "member",
  "admin",
  "owner",
] as const;
type Caller = typeof CALLERS[number];

interface Fixture {
  project: ProjectView;
  users: Record<Exclude<Caller, "anonymous">, TestUser>;
  /** A member who is neither caller: target of member removal and device release. */
  bystander: TestUser;
  bystanderDeviceId: string;
  /** A device of the calling user, when the caller is in the project. */
  callerDeviceId?: string;
}

interface Endpoint {
  name: string;
  expected: Record<Caller, number>;
  call(
    harness: Harness,
    fixture: Fixture,
    token: string | undefined,
  ): Promise<Response>;
}

async function addMember(
  harness: Harness,
  project: ProjectView,
  owner: TestUser,
  user: TestUser,
  role: string,
) {
  const response = await harness.call(
    "nebula-project",
    "POST",
    `/${project.id}/members`,
    { token: owner.token, body: { userId: user.id, role } },
  );
  assert.equal(response.status, 200, await response.text());
}

async function registerDevice(
  harness: Harness,
  projectId: string,
  user: TestUser,
): Promise<string> {
  const { body } = await deviceRequest(projectId);
  const response = await harness.call("nebula-register", "POST", "", {
    token: user.token,
    body,
  });
  const text = await response.text();
  assert.equal(response.status, 201, text);
  return body.deviceId;
}

async function createFixture(
  harness: Harness,
  caller: Caller,
): Promise<Fixture> {
  const owner = await harness.createUser("owner");
  const admin = await harness.createUser("admin");
  const member = await harness.createUser("member");
  const other = await harness.createUser("other");
  const bystander = await harness.createUser("bystander");
  const project = await harness.createProject(owner);
  await addMember(harness, project, owner, admin, "admin");
  await addMember(harness, project, owner, member, "member");
  await addMember(harness, project, owner, bystander, "member");
  const bystanderDeviceId = await registerDevice(
    harness,
    project.id,
    bystander,
  );

  const users = { "other user": other, member, admin, owner };
  const inProject = caller === "member" || caller === "admin" ||
    caller === "owner";
  const callerDeviceId = inProject
    ? await registerDevice(harness, project.id, users[caller])
    : undefined;
  return { project, users, bystander, bystanderDeviceId, callerDeviceId };
}

const ENDPOINTS: Endpoint[] = [
  {
    name: "POST /nebula-project",
    expected: {
      anonymous: 401,
      "other user": 201,
      member: 201,
      admin: 201,
      owner: 201,
    },
    call: (harness, _fixture, token) =>
      harness.call("nebula-project", "POST", "", {
        token,
        body: {
          name: "Second film",
          cidr: "10.77.0.0/28",
          lighthouses: [{ ip: "10.77.0.1", endpoints: ["192.0.2.1:4242"] }],
        },
      }),
  },
  {
    name: "GET /nebula-project/{id}",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 200,
      admin: 200,
      owner: 200,
    },
    call: (harness, fixture, token) =>
      harness.call("nebula-project", "GET", `/${fixture.project.id}`, {
        token,
      }),
  },
  {
    name: "PATCH /nebula-project/{id}",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 403,
      admin: 200,
      owner: 200,
    },
    call: (harness, fixture, token) =>
      harness.call("nebula-project", "PATCH", `/${fixture.project.id}`, {
        token,
        body: {
          lighthouses: [
            { ip: "10.42.0.1", endpoints: ["198.51.100.10:4242"] },
            { ip: "10.42.0.200", endpoints: ["198.51.100.11:4242"] },
          ],
        },
      }),
  },
  {
    name: "POST /nebula-project/{id}/members",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 403,
      admin: 200,
      owner: 200,
    },
    call: async (harness, fixture, token) => {
      const newcomer = await harness.createUser("newcomer");
      return await harness.call(
        "nebula-project",
        "POST",
        `/${fixture.project.id}/members`,
        { token, body: { userId: newcomer.id, role: "member" } },
      );
    },
  },
  {
    name: "DELETE /nebula-project/{id}/members/{userId}",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 403,
      admin: 204,
      owner: 204,
    },
    call: (harness, fixture, token) =>
      harness.call(
        "nebula-project",
        "DELETE",
        `/${fixture.project.id}/members/${fixture.bystander.id}`,
        { token },
      ),
  },
  {
    name: "POST /nebula-register",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 201,
      admin: 201,
      owner: 201,
    },
    call: async (harness, fixture, token) =>
      harness.call("nebula-register", "POST", "", {
        token,
        body: (await deviceRequest(fixture.project.id)).body,
      }),
  },
  {
    name: "POST /nebula-register as lighthouse",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 403,
      admin: 201,
      owner: 201,
    },
    call: async (harness, fixture, token) =>
      harness.call("nebula-register", "POST", "", {
        token,
        body: (await deviceRequest(fixture.project.id, { lighthouse: true }))
          .body,
      }),
  },
  {
    name: "GET /nebula-ca",
    expected: {
      anonymous: 200,
      "other user": 200,
      member: 200,
      admin: 200,
      owner: 200,
    },
    call: (harness, fixture, token) =>
      harness.call("nebula-ca", "GET", `?projectId=${fixture.project.id}`, {
        token,
      }),
  },
  {
    name: "GET /nebula-status/{another member's device}",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 200,
      admin: 200,
      owner: 200,
    },
    call: (harness, fixture, token) =>
      harness.call(
        "nebula-status",
        "GET",
        `/${fixture.bystanderDeviceId}?projectId=${fixture.project.id}`,
        { token },
      ),
  },
  {
    name: "POST /nebula-release/{own device}",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 200,
      admin: 200,
      owner: 200,
    },
    call: (harness, fixture, token) =>
      harness.call(
        "nebula-release",
        "POST",
        `/${
          fixture.callerDeviceId ?? fixture.bystanderDeviceId
        }?projectId=${fixture.project.id}`,
        { token },
      ),
  },
  {
    name: "POST /nebula-release/{another member's device}",
    expected: {
      anonymous: 401,
      "other user": 403,
      member: 403,
      admin: 200,
      owner: 200,
    },
    call: (harness, fixture, token) =>
      harness.call(
        "nebula-release",
        "POST",
        `/${fixture.bystanderDeviceId}?projectId=${fixture.project.id}`,
        { token },
      ),
  },
];

function renderMatrix(cells: Map<string, string>): string {
  const header = ["endpoint", ...CALLERS].join(" | ");
  const rows = ENDPOINTS.map((endpoint) =>
    [
      endpoint.name,
      ...CALLERS.map((caller) => cells.get(`${endpoint.name}|${caller}`)),
    ].join(" | ")
  );
  return [header, ...rows].join("\n");
}

Deno.test("authorization matrix holds for every caller and endpoint", async () => {
  await using harness = await startHarness();
  const cells = new Map<string, string>();
  const failures: string[] = [];

  for (const endpoint of ENDPOINTS) {
    for (const caller of CALLERS) {
      const fixture = await createFixture(harness, caller);
      const token = caller === "anonymous"
        ? undefined
        : fixture.users[caller].token;
      const before = await rowCounts(harness.db);

      const response = await endpoint.call(harness, fixture, token);
      const body = await response.text();

      const expected = endpoint.expected[caller];
      const key = `${endpoint.name}|${caller}`;
      cells.set(key, `${response.status}`);
      if (response.status !== expected) {
        cells.set(key, `${response.status} (expected ${expected})`);
        failures.push(`${key}: ${response.status} ${body.slice(0, 200)}`);
      }
      if (response.headers.get("access-control-allow-origin") !== "*") {
        failures.push(`${key}: no CORS header`);
      }
      if (response.status >= 400) {
        const after = await rowCounts(harness.db);
        if (JSON.stringify(after) !== JSON.stringify(before)) {
          failures.push(
            `${key}: refused call changed ${JSON.stringify(before)} to ${
              JSON.stringify(after)
            }`,
          );
        }
        const problem = JSON.parse(body);
        const code = { 401: "missing_token", 403: "forbidden" }[
          response.status as 401 | 403
        ];
        if (code && problem.code !== code) {
          failures.push(`${key}: code ${problem.code}, expected ${code}`);
        }
      }
    }
  }

  assert.deepEqual(failures, [], `\n${renderMatrix(cells)}\n`);
});
