/** The HTTP layer every function shares: CORS, routing, problem documents and request logs. */
import assert from "node:assert/strict";
import { createFunctionHandler } from "../../shared/http/serve.ts";
import { readProblem, startHarness } from "./harness.ts";

Deno.test("OPTIONS preflight answers 204 with CORS and no token", async () => {
  await using harness = await startHarness();

  for (const name of ["nebula-register", "nebula-status", "nebula-project"]) {
    const response = await harness.call(name, "OPTIONS", "/anything", {
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });

    assert.equal(response.status, 204, name);
    assert.equal(response.headers.get("access-control-allow-origin"), "*");
    assert.match(
      response.headers.get("access-control-allow-headers") ?? "",
      /authorization.*content-type|content-type.*authorization/,
    );
    assert.match(
      response.headers.get("access-control-allow-methods") ?? "",
      /POST/,
    );
  }
});

Deno.test("routes match with and without the /functions/v1 prefix", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);

  const prefixed = await harness.call(
    "nebula-ca",
    "GET",
    `?projectId=${project.id}`,
  );
  const bare = await harness.call(
    "nebula-ca",
    "GET",
    `?projectId=${project.id}`,
    { bare: true },
  );

  assert.equal(prefixed.status, 200);
  assert.equal(bare.status, 200);
  assert.equal(await prefixed.text(), await bare.text());
});

Deno.test("unknown path is 404 and wrong method is 405 with Allow", async () => {
  await using harness = await startHarness();

  const unknown = await harness.call("nebula-register", "POST", "/x/y");
  const method = await harness.call("nebula-register", "GET", "");

  assert.equal(unknown.status, 404);
  assert.equal(unknown.headers.get("access-control-allow-origin"), "*");
  assert.equal((await readProblem(unknown)).code, "not_found");
  assert.equal(method.status, 405);
  assert.equal(method.headers.get("allow"), "POST, OPTIONS");
  assert.equal((await readProblem(method)).code, "method_not_allowed");
});

Deno.test("body checks: content type 415, size 413, empty 400", async () => {
  await using harness = await startHarness();
  const user = await harness.createUser();

  const text = await harness.call("nebula-register", "POST", "", {
    token: user.token,
    body: {},
    headers: { "content-type": "text/plain" },
  });
  const large = await harness.call("nebula-register", "POST", "", {
    token: user.token,
    body: { deviceName: "x".repeat(70 * 1024) },
  });
  const empty = await harness.call("nebula-register", "POST", "", {
    token: user.token,
    headers: { "content-type": "application/json" },
  });

  assert.equal(text.status, 415);
  assert.equal((await readProblem(text)).code, "unsupported_media_type");
  assert.equal(large.status, 413);
  assert.equal((await readProblem(large)).code, "payload_too_large");
  assert.equal(empty.status, 400);
  assert.equal((await readProblem(empty)).code, "invalid_json");
});

Deno.test("validation failure lists every failing field", async () => {
  await using harness = await startHarness();
  const user = await harness.createUser();

  const response = await harness.call("nebula-register", "POST", "", {
    token: user.token,
    body: { projectId: "nope", deviceId: 7, deviceName: "", extra: true },
  });

  assert.equal(response.status, 400);
  const problem = await readProblem(response);
  assert.equal(problem.code, "invalid_input");
  const fields = problem.errors!.map((issue) => issue.field).sort();
  for (const field of ["deviceId", "deviceName", "projectId", "publicKey"]) {
    assert.ok(fields.includes(field), `${field} missing from ${fields}`);
  }
});

Deno.test("each request logs one line with ids, status and duration", async () => {
  await using harness = await startHarness();
  const owner = await harness.createUser("owner");
  const project = await harness.createProject(owner);
  harness.logs.length = 0;
  const deviceId = crypto.randomUUID();

  const response = await harness.call(
    "nebula-status",
    "GET",
    `/${deviceId}?projectId=${project.id}`,
    { token: owner.token, headers: { "x-request-id": "trace-12345678" } },
  );
  await response.body?.cancel();

  assert.equal(harness.logs.length, 1);
  const [line] = harness.logs;
  assert.equal(line.msg, "request");
  assert.equal(line.function, "nebula-status");
  assert.equal(line.requestId, "trace-12345678");
  assert.equal(line.projectId, project.id);
  assert.equal(line.deviceId, deviceId);
  assert.equal(line.status, 404);
  assert.equal(typeof line.durationMs, "number");
  assert.equal(response.headers.get("x-request-id"), "trace-12345678");
});

Deno.test("unexpected error is a generic 500 that hides and logs the cause", async () => {
  const lines: Record<string, unknown>[] = [];
  const handler = createFunctionHandler("probe", [{
    method: "GET",
    path: "/",
    handle: () => {
      throw new Error("relation internal_secret_table does not exist");
    },
  }], {
    info: (msg, fields) => lines.push({ msg, ...fields }),
    error: (msg, fields) => lines.push({ msg, ...fields }),
  });

  const response = await handler(
    new Request("http://127.0.0.1/functions/v1/probe"),
  );
  const body = await response.text();

  assert.equal(response.status, 500);
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
  assert.equal(JSON.parse(body).code, "internal_error");
  assert.ok(!body.includes("internal_secret_table"));
  const error = lines.find((line) => line.msg === "request failed");
  assert.match(String(error?.errorMessage), /internal_secret_table/);
});
