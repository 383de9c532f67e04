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

/**
 * The expected status of every cell. Release of "own device" by the other
 * user, who has none, targets the bystander's device.
 */
const MATRIX = `
endpoint                                       | anonymous | other user | member | admin | owner
POST /nebula-project                           | 401       | 201        | 201    | 201   | 201
GET /nebula-project/{id}                       | 401       | 403        | 200    | 200   | 200
PATCH /nebula-project/{id}                     | 401       | 403        | 403    | 200   | 200
POST /nebula-project/{id}/members              | 401       | 403        | 403    | 200   | 200
DELETE /nebula-project/{id}/members/{userId}   | 401       | 403        | 403    | 204   | 204
POST /nebula-register                          | 401       | 403        | 201    | 201   | 201
POST /nebula-register as lighthouse            | 401       | 403        | 403    | 201   | 201
GET /nebula-ca                                 | 200       | 200        | 200    | 200   | 200
GET /nebula-status/{another member's device}   | 401       | 403        | 200    | 200   | 200
POST /nebula-release/{own device}              | 401       | 403        | 200    | 200   | 200
POST /nebula-release/{another member's device} | 401       | 403        | 403    | 200   | 200
`;

function parseMatrix(text: string): Map<string, Record<Caller, number>> {
  const [header, ...rows] = text.trim().split("\n").map((line) =>
    line.split("|").map((cell) => cell.trim())
  );
  assert.deepEqual(header.slice(1), [...CALLERS]);
  return new Map(rows.map(([name, ...cells]) => [
    name,
    Object.fromEntries(
      CALLERS.map((caller, index) => [caller, Number(cells[index])]),
    ) as Record<Caller, number>,
  ]));
}

const EXPECTED = parseMatrix(MATRIX);

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
    call: (harness, fixture, token) =>
      harness.call("nebula-project", "GET", `/${fixture.project.id}`, {
        token,
      }),
  },
  {
    name: "PATCH /nebula-project/{id}",
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
    call: async (harness, fixture, token) =>
      harness.call("nebula-register", "POST", "", {
        token,
        body: (await deviceRequest(fixture.project.id)).body,
      }),
  },
  {
    name: "POST /nebula-register as lighthouse",
    call: async (harness, fixture, token) =>
      harness.call("nebula-register", "POST", "", {
        token,
        body: (await deviceRequest(fixture.project.id, { lighthouse: true }))
          .body,
      }),
  },
  {
    name: "GET /nebula-ca",
    call: (harness, fixture, token) =>
      harness.call("nebula-ca", "GET", `?projectId=${fixture.project.id}`, {
        token,
      }),
  },
  {
    name: "GET /nebula-status/{another member's device}",
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
  assert.deepEqual(
    [...EXPECTED.keys()].sort(),
    ENDPOINTS.map((endpoint) => endpoint.name).sort(),
    "every endpoint has a row in the table and every row an endpoint",
  );
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

      const expected = EXPECTED.get(endpoint.name)![caller];
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
