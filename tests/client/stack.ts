/**
 * Starts the project's local stack (`local/server.ts`) on a free port with
 * its embedded PGlite database, and makes users and projects through its API.
 */
import { existsSync } from "node:fs";
import { run } from "./support.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
export const SERVER_ENTRY = `${ROOT}local/server.ts`;

/** Why the stack tests cannot run here, or null when they can. */
export function stackUnavailable(): string | null {
  return existsSync(SERVER_ENTRY) ? null : "local/server.ts does not exist yet";
}

export interface Stack {
  url: string;
  functionsUrl: string;
  dataDir: string;
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts the stack and waits until nebula-ca responds. */
export async function startStack(): Promise<Stack> {
  const port = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "mesh-stack-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SERVER_ENTRY],
    cwd: ROOT,
    env: {
      PORT: String(port),
      LOCAL_DATA_DIR: dataDir,
      PGLITE_DATA_DIR: dataDir,
      DATABASE_URL: "",
    },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await child.status;
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  };

  for (let i = 0; i < 300; i++) {
    const ready = await fetch(
      `${url}/functions/v1/nebula-ca?projectId=00000000-0000-4000-8000-000000000000`,
    )
      .then(async (response) => {
        await response.body?.cancel();
        return true;
      })
      .catch(() => false);
    if (ready) {
      return { url, functionsUrl: `${url}/functions/v1`, dataDir, stop };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stop();
  throw new Error(`local stack did not answer on ${url} within 30 s`);
}

/** Creates a user with `npm run dev:user`'s script and returns its id and access token. */
export async function createUser(
  stack: Stack,
  email: string,
): Promise<{ id: string; access_token: string }> {
  const result = await run(Deno.execPath(), [
    "run",
    "-A",
    `${ROOT}scripts/dev_user.ts`,
    email,
  ], { cwd: ROOT, env: { VIDSYNC_MESH_URL: stack.url } });
  if (result.code !== 0) throw new Error(`dev_user failed: ${result.stderr}`);

  const line = result.stdout.trim().split("\n").reverse().find((text) =>
    text.startsWith("{")
  );
  return JSON.parse(line!);
}

/** Creates a project with one lighthouse; returns its id. */
export async function createProject(
  stack: Stack,
  token: string,
  cidr = "10.88.0.0/24",
): Promise<string> {
  const response = await fetch(`${stack.functionsUrl}/nebula-project`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${token}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({
      name: "client test",
      cidr,
      lighthouses: [{
        ip: cidr.replace(/0\/\d+$/, "1"),
        endpoints: ["127.0.0.1:4242"],
        name: "lh",
      }],
    }),
  });
  const body = await response.json();
  if (response.status !== 201) {
    throw new Error(
      `create project: ${response.status} ${JSON.stringify(body)}`,
    );
  }

  return body.id ?? body.projectId;
}
