/**
 * The client and the CLI against the real local stack (`local/server.ts` on
 * PGlite), with nebula -test as the oracle of every installed configuration.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { parse } from "yaml";
import { MeshClient } from "../../client/src/client.ts";
import {
  DeviceNotFoundError,
  ExitCode,
  InvalidTokenError,
  ProjectNotFoundError,
} from "../../client/src/errors.ts";
import { decodeBase64, encodeBase64, sha256Hex } from "../../client/src/pem.ts";
import { nebulaTest, run } from "./support.ts";
import {
  createProject,
  createUser,
  stackUnavailable,
  startStack,
} from "./stack.ts";

const unavailable = stackUnavailable();
const MAIN = new URL("../../client/src/main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

interface Capture {
  requests: string[];
  responses: { url: string; contentType: string; bytes: Uint8Array }[];
  fetch: typeof fetch;
}

/** Returns a fetch that records every request (URL, headers, body) and every raw response body. */
function capturingFetch(): Capture {
  const capture: Capture = {
    requests: [],
    responses: [],
    fetch: globalThis.fetch,
  };
  capture.fetch = async (input, init) => {
    const request = new Request(input, init);
    const body = decoder.decode(await request.clone().arrayBuffer());
    capture.requests.push(
      `${request.url}\n${JSON.stringify([...request.headers])}\n${body}`,
    );
    const response = await fetch(request);
    capture.responses.push({
      url: request.url,
      contentType: response.headers.get("content-type") ?? "",
      bytes: new Uint8Array(await response.clone().arrayBuffer()),
    });
    return response;
  };
  return capture;
}

async function cli(args: string[], env: Record<string, string>) {
  const result = await run(Deno.execPath(), ["run", "-A", MAIN, ...args], {
    env,
  });
  return { ...result, lines: result.stderr.trim().split("\n").filter(Boolean) };
}

Deno.test({
  name: "client against the local stack",
  ignore: unavailable !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const stack = await startStack();
    const home = await Deno.makeTempDir({ prefix: "mesh-client-" });
    try {
      const user = await createUser(
        stack,
        `device-${crypto.randomUUID()}@example.com`,
      );
      const projectId = await createProject(stack, user.access_token);
      const capture = capturingFetch();
      const client = new MeshClient({
        url: stack.url,
        accessToken: user.access_token,
        fetch: capture.fetch,
      });
      const directory = path.join(home, "nebula", projectId);
      const keyFiles: string[] = [];
      const rememberKey = async () =>
        keyFiles.push(await Deno.readTextFile(`${directory}/node.key`));
      let firstIp = "";

      await t.step(
        "enroll writes a config that passes nebula -test",
        async () => {
          const result = await client.enroll({
            projectId,
            deviceName: "laptop",
            directory,
          });
          await rememberKey();
          const config = parse(
            await Deno.readTextFile(`${directory}/nebula.yml`),
          );
          const check = await nebulaTest(`${directory}/nebula.yml`);

          assert.equal(result.created, true);
          assert.equal(check.code, 0, check.stdout + check.stderr);
          assert.equal(config.pki.key, `${directory}/node.key`);
          assert.equal(
            (await Deno.stat(`${directory}/node.key`)).mode! & 0o777,
            0o600,
          );
          firstIp = result.state.ip;
        },
      );

      await t.step("second enroll keeps the ip and the key", async () => {
        const keyBefore = await Deno.readTextFile(`${directory}/node.key`);

        const result = await client.enroll({
          projectId,
          deviceName: "laptop",
          directory,
        });

        assert.equal(result.created, false);
        assert.equal(result.state.ip, firstIp);
        assert.equal(
          await Deno.readTextFile(`${directory}/node.key`),
          keyBefore,
        );
      });

      await t.step("json bundle bytes equal what the server sent", async () => {
        const result = await client.enroll({
          projectId,
          deviceName: "laptop",
          directory,
        });
        const raw = capture.responses.at(-1)!;
        const sent = JSON.parse(decoder.decode(raw.bytes)).bundle;

        assert.equal(
          await sha256Hex(result.bundle),
          await sha256Hex(decodeBase64(sent)),
        );
        assert.equal(
          result.state.bundleSha256,
          await sha256Hex(decodeBase64(sent)),
        );
      });

      await t.step("zip bundle bytes equal what the server sent", async () => {
        const result = await client.enroll({
          projectId,
          deviceName: "laptop",
          directory,
          format: "zip",
        });
        const raw = capture.responses.at(-1)!;
        const check = await nebulaTest(`${directory}/nebula.yml`);

        assert.match(raw.contentType, /^application\/zip/);
        assert.equal(
          await sha256Hex(result.bundle),
          await sha256Hex(raw.bytes),
        );
        assert.equal(result.state.ip, firstIp);
        assert.equal(check.code, 0, check.stdout + check.stderr);
      });

      await t.step(
        "status reports the installed certificate as current",
        async () => {
          const status = await client.status({ projectId, directory });

          assert.equal(status.server.ip, firstIp);
          assert.equal(status.certificateCurrent, true);
        },
      );

      await t.step({
        name: "renew replaces the certificate in place",
        fn: async () => {
          const before = await client.status({ projectId, directory });

          const result = await client.renew({
            projectId,
            directory,
            rotateKey: true,
          });
          await rememberKey();
          const check = await nebulaTest(`${directory}/nebula.yml`);

          assert.notEqual(
            result.state.certificate.fingerprint,
            before.local.certificate.fingerprint,
          );
          assert.equal(result.state.ip, firstIp);
          assert.equal(check.code, 0, check.stdout + check.stderr);
        },
      });

      await t.step({
        name: "refresh installs nebula.yml once, then sends a matching etag",
        fn: async () => {
          const first = await client.refresh({ projectId, directory });
          const second = await client.refresh({ projectId, directory });
          const check = await nebulaTest(`${directory}/nebula.yml`);
          const lastConfigRequest = capture.requests.filter((r) =>
            r.includes("/nebula-config/")
          ).at(-1)!;

          assert.ok(first.configEtag, "refresh stored no ETag");
          assert.equal(second.changed, false);
          assert.ok(
            // Headers are captured as JSON, which escapes the ETag's quotes.
            lastConfigRequest.includes(first.configEtag!.replaceAll('"', "")),
            "If-None-Match was not sent",
          );
          assert.equal(check.code, 0, check.stdout + check.stderr);
        },
      });

      await t.step("the private key never appears in any request", () => {
        const forms = keyFiles.flatMap((pem) => {
          const body = pem.split("\n").slice(1, -2).join("");
          const bytes = decodeBase64(body);
          const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0"))
            .join("");
          return [
            body,
            encodeBase64(bytes).replaceAll("+", "-").replaceAll("/", "_")
              .replace(/=+$/, ""),
            hex,
          ];
        });

        assert.ok(capture.requests.length >= 5);
        for (const request of capture.requests) {
          for (const form of forms) {
            assert.ok(
              !request.includes(form),
              `private key sent in ${request.split("\n")[0]}`,
            );
          }
        }
      });

      await t.step("release removes the configuration", async () => {
        const result = await client.release({ projectId, directory });

        assert.equal(result.removed, true);
        assert.deepEqual([...Deno.readDirSync(path.dirname(directory))], []);
        await assert.rejects(
          () =>
            client.api.invoke(
              `nebula-status/${result.deviceId}?projectId=${projectId}`,
              { method: "GET" },
            ),
          DeviceNotFoundError,
        );
      });

      await t.step("api errors become typed errors", async () => {
        const stranger = new MeshClient({
          url: stack.url,
          accessToken: "not-a-token",
        });
        const unknownProject = crypto.randomUUID();

        await assert.rejects(
          () =>
            stranger.enroll({
              projectId,
              deviceName: "x",
              directory: `${home}/other`,
            }),
          InvalidTokenError,
        );
        await assert.rejects(
          () =>
            client.enroll({
              projectId: unknownProject,
              deviceName: "x",
              directory: `${home}/other`,
            }),
          ProjectNotFoundError,
        );
      });

      await t.step(
        "cli enroll, status and release with the token from env",
        async () => {
          const env = {
            VIDSYNC_ACCESS_TOKEN: user.access_token,
            SUPABASE_URL: stack.url,
            HOME: home,
          };
          const dir = `${home}/cli`;

          const enrolled = await cli([
            "enroll",
            "--project",
            projectId,
            "--name",
            "cli",
            "--dir",
            dir,
            "--json",
          ], env);
          const status = await cli([
            "status",
            "--project",
            projectId,
            "--dir",
            dir,
            "--json",
          ], env);
          const released = await cli([
            "release",
            "--project",
            projectId,
            "--dir",
            dir,
            "--json",
          ], env);

          assert.equal(enrolled.code, 0, enrolled.stderr);
          assert.ok(enrolled.lines.length >= 4, "no progress lines");
          assert.equal(
            JSON.parse(status.stdout).server.ip,
            JSON.parse(enrolled.stdout).state.ip,
          );
          assert.equal(released.code, 0, released.stderr);
          assert.equal(JSON.parse(released.stdout).removed, true);
        },
      );

      await t.step(
        "cli errors print one line and the documented exit code",
        async () => {
          const base = { SUPABASE_URL: stack.url, HOME: home };
          const cases: [
            string,
            string[],
            Record<string, string>,
            number,
            RegExp,
          ][] = [
            [
              "bad token",
              ["enroll", "--project", projectId, "--name", "x", "--quiet"],
              { ...base, VIDSYNC_ACCESS_TOKEN: "bad" },
              ExitCode.auth,
              /invalid_token/,
            ],
            [
              "unknown project",
              [
                "enroll",
                "--project",
                crypto.randomUUID(),
                "--name",
                "x",
                "--quiet",
              ],
              { ...base, VIDSYNC_ACCESS_TOKEN: user.access_token },
              ExitCode.server,
              /project_not_found/,
            ],
            [
              "not enrolled",
              ["status", "--project", projectId, "--quiet"],
              { ...base, VIDSYNC_ACCESS_TOKEN: user.access_token },
              ExitCode.other,
              /run enroll first/,
            ],
          ];
          for (const [label, args, env, code, pattern] of cases) {
            const result = await cli(args, env);

            assert.equal(result.code, code, `${label}: ${result.stderr}`);
            assert.equal(result.lines.length, 1, `${label}: ${result.stderr}`);
            assert.match(result.lines[0], pattern, label);
          }
        },
      );

      await t.step(
        "SIGKILL during cli enroll leaves the old or the new configuration",
        async () => {
          const env = {
            VIDSYNC_ACCESS_TOKEN: user.access_token,
            SUPABASE_URL: stack.url,
            HOME: home,
          };
          const dir = `${home}/crash`;
          const first = await cli([
            "enroll",
            "--project",
            projectId,
            "--name",
            "crash",
            "--dir",
            dir,
            "--quiet",
          ], env);
          assert.equal(first.code, 0, first.stderr);

          for (let i = 0; i < 12; i++) {
            const child = new Deno.Command(Deno.execPath(), {
              args: [
                "run",
                "-A",
                MAIN,
                "enroll",
                "--project",
                projectId,
                "--name",
                "crash",
                "--dir",
                dir,
              ],
              env,
              stdout: "null",
              stderr: "piped",
            }).spawn();
            // Kill once the tool reports it is writing, at a random point of the write.
            const reader = child.stderr.getReader();
            let seen = "";
            while (!seen.includes("Writing the configuration")) {
              const { value, done } = await reader.read();
              if (done) break;
              seen += decoder.decode(value);
            }
            await new Promise((resolve) =>
              setTimeout(resolve, Math.random() * 4)
            );
            child.kill("SIGKILL");
            await child.status;
            await reader.cancel().catch(() => {});

            const check = await nebulaTest(`${dir}/nebula.yml`);
            const state = JSON.parse(
              await Deno.readTextFile(`${dir}/device.json`),
            );
            const crt = await Deno.readTextFile(`${dir}/node.crt`);
            assert.equal(check.code, 0, check.stdout + check.stderr);
            assert.equal(
              state.certificate.fingerprint,
              await sha256Hex(
                decodeBase64(crt.split("\n").slice(1, -2).join("")),
              ),
            );
          }
        },
      );
    } finally {
      await stack.stop();
      await Deno.remove(home, { recursive: true }).catch(() => {});
    }
  },
});
