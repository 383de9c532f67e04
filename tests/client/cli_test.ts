/** CLI behaviour that needs no server: usage, credentials and network errors. */
import assert from "node:assert/strict";
import { runCli } from "../../client/src/cli.ts";
import { ExitCode } from "../../client/src/errors.ts";

const PROJECT = "6b1f0f4e-1111-4111-8111-111111111111";

async function runInProcess(args: string[], env: Record<string, string> = {}) {
  let stdout = "";
  let stderr = "";
  const code = await runCli(args, {
    stdout: (text) => stdout += text,
    stderr: (text) => stderr += text,
    env,
  });

  return {
    code,
    stdout,
    stderr,
    lines: stderr.trim().split("\n").filter(Boolean),
  };
}

function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("cli prints help for every command", async () => {
  for (const command of ["enroll", "status", "renew", "refresh", "release"]) {
    const result = await runInProcess([command, "--help"]);

    assert.equal(result.code, ExitCode.ok);
    assert.match(result.stdout, new RegExp(`^Usage: vidsync-mesh ${command}`));
    assert.match(result.stdout, /Exit codes:/);
  }
});

Deno.test("cli usage errors exit 2 with one line", async () => {
  const cases = [
    ["bogus"],
    ["enroll", "--project", PROJECT],
    ["status"],
    ["status", "--project", PROJECT, "--rotate-key"],
    ["enroll", "--project", PROJECT, "--name", "x", "--unknown"],
    ["status", "--project", "not-a-uuid"],
    ["status", "--project", PROJECT, "--timeout", "soon"],
  ];
  for (const args of cases) {
    const result = await runInProcess(args, { VIDSYNC_ACCESS_TOKEN: "t" });

    assert.equal(result.code, ExitCode.usage, args.join(" "));
    assert.equal(result.lines.length, 1, result.stderr);
    assert.match(result.lines[0], /^vidsync-mesh: /);
  }
});

Deno.test("cli without credentials exits 3", async () => {
  const result = await runInProcess([
    "status",
    "--project",
    PROJECT,
    "--quiet",
  ]);

  assert.equal(result.code, ExitCode.auth);
  assert.equal(result.lines.length, 1);
  assert.match(result.lines[0], /VIDSYNC_ACCESS_TOKEN/);
});

Deno.test("cli network failure exits 5 with one line", async () => {
  const result = await runInProcess(
    [
      "enroll",
      "--project",
      PROJECT,
      "--name",
      "x",
      "--quiet",
      "--json",
      "--dir",
      await Deno.makeTempDir(),
    ],
    {
      VIDSYNC_ACCESS_TOKEN: "t",
      SUPABASE_URL: `http://127.0.0.1:${closedPort()}`,
    },
  );

  assert.equal(result.code, ExitCode.network);
  assert.equal(result.lines.length, 1, result.stderr);
  assert.match(
    result.lines[0],
    /Could not reach http:\/\/127\.0\.0\.1:\d+\/functions\/v1\/nebula-register/,
  );
  assert.equal(JSON.parse(result.stdout).error.code, "network_error");
});

Deno.test("cli reports a missing configuration with exit 1", async () => {
  const dir = await Deno.makeTempDir();

  const result = await runInProcess(
    ["refresh", "--project", PROJECT, "--dir", `${dir}/none`, "--quiet"],
    { VIDSYNC_ACCESS_TOKEN: "t" },
  );

  assert.equal(result.code, ExitCode.other);
  assert.match(result.lines[0], /No configuration in .*; run enroll first/);
});

Deno.test("cli under node 20 runs the built tool", {
  ignore: !existsSyncSafe(
    new URL("../../client/dist/main.js", import.meta.url).pathname,
  ),
}, async () => {
  const bin =
    new URL("../../client/bin/vidsync-mesh.mjs", import.meta.url).pathname;
  const output = await new Deno.Command("node", {
    args: [bin, "status", "--project", PROJECT, "--quiet"],
    env: { VIDSYNC_ACCESS_TOKEN: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(output.stderr).trim().split("\n");

  assert.equal(output.code, ExitCode.auth);
  assert.equal(lines.length, 1, lines.join("\n"));
});

function existsSyncSafe(file: string): boolean {
  try {
    Deno.statSync(file);
    return true;
  } catch {
    return false;
  }
}
