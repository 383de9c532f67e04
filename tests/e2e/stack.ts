/**
 * The local stack (`local/server.ts`) as a subprocess on a free port, on a
 * PostgreSQL test database, plus the HTTP calls the end-to-end and
 * hostile-input tests share. The server runs in its own process, as in
 * `npm start`, so client load and server load do not share one event loop.
 */
import { existsSync } from "node:fs";
import JSZip from "jszip";

const ROOT = new URL("../../", import.meta.url).pathname;
export const SERVER_ENTRY = `${ROOT}local/server.ts`;
export const DEV_USER_ENTRY = `${ROOT}scripts/dev_user.ts`;

/** The Supabase CLI's well-known local JWT secret, the stack's default. */
export const LOCAL_JWT_SECRET =
  "super-secret-jwt-token-with-at-least-32-characters-long";

/** Why the stack tests cannot run here, or null when they can. */
export function stackUnavailable(): string | null {
  if (!existsSync(SERVER_ENTRY)) return "local/server.ts does not exist";
  if (!existsSync(DEV_USER_ENTRY)) return "scripts/dev_user.ts does not exist";
  return null;
}

export interface LocalStack extends AsyncDisposable {
  /** Base URL of the functions, e.g. http://127.0.0.1:PORT/functions/v1. */
  functionsUrl: string;
  databaseUrl: string;
  /** Environment the server was started with; dev_user reads PORT from it. */
  env: Record<string, string>;
  /** The last 64 KiB of the server's stdout and stderr. */
  logs(): string;
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function randomKek(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes));
}

async function waitForServer(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ready = await fetch(
      `${url}/nebula-ca?projectId=${crypto.randomUUID()}`,
    )
      .then(async (response) => {
        await response.body?.cancel();
        return true;
      })
      .catch(() => false);
    if (ready) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `local stack did not respond on ${url} within ${timeoutMs} ms`,
  );
}

/** Starts the local stack on `databaseUrl` and waits until it responds. */
export async function startLocalStack(
  databaseUrl: string,
  extraEnv: Record<string, string> = {},
): Promise<LocalStack> {
  const port = freePort();
  const env = {
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    SUPABASE_DB_URL: databaseUrl,
    SUPABASE_JWT_SECRET: LOCAL_JWT_SECRET,
    NEBULA_CA_KEK: randomKek(),
    ...extraEnv,
  };
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SERVER_ENTRY],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let logText = "";
  const decoder = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      logText = (logText + decoder.decode(chunk, { stream: true }))
        .slice(-65536);
    }
  };
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]);

  const killSync = () => {
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch {
      // Already exited.
    }
  };
  globalThis.addEventListener("unload", killSync);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    globalThis.removeEventListener("unload", killSync);
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    const timer = setTimeout(killSync, 3000);
    await child.status;
    clearTimeout(timer);
    await drained;
  };

  const functionsUrl = `http://127.0.0.1:${port}/functions/v1`;
  try {
    await waitForServer(functionsUrl, 30_000);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${logText}`);
  }

  return {
    functionsUrl,
    databaseUrl,
    env,
    logs: () => logText,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

export interface DevUser {
  id: string;
  email: string;
  access_token: string;
}

/** Creates a user through `npm run dev:user`'s script, which calls the stack. */
export async function createDevUser(
  stack: LocalStack,
  email: string,
): Promise<DevUser> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", DEV_USER_ENTRY, email],
    cwd: ROOT,
    env: stack.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr);
    throw new Error(`dev_user ${email} failed: ${stderr}${stdout}`);
  }

  const line = stdout.trim().split("\n").reverse().find((text) =>
    text.trimStart().startsWith("{")
  );
  if (!line) throw new Error(`dev_user printed no JSON: ${stdout}`);
  return JSON.parse(line);
}

export interface ApiOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  json: any;
  text: string;
}

/** Sends one JSON request to a function path such as `nebula-register`. */
export async function api(
  stack: LocalStack,
  method: string,
  path: string,
  options: ApiOptions = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) {
    headers["Content-Type"] ??= "application/json";
  }

  const response = await fetch(`${stack.functionsUrl}/${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  let json = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON; callers that expect JSON assert on `json`.
  }

  return { status: response.status, headers: response.headers, json, text };
}

/** Throws with the response when `response.status` is not one of `expected`. */
export function expectStatus(
  response: ApiResponse,
  ...expected: number[]
): ApiResponse {
  if (!expected.includes(response.status)) {
    throw new Error(
      `expected HTTP ${
        expected.join(" or ")
      }, got ${response.status}: ${response.text}`,
    );
  }
  return response;
}

export interface LighthouseInput {
  ip: string;
  endpoints: string[];
  name?: string;
}

/** Creates a project as the owner `token`; returns its id. */
export async function createProject(
  stack: LocalStack,
  token: string,
  cidr: string,
  lighthouses: LighthouseInput[],
): Promise<string> {
  const response = await api(stack, "POST", "nebula-project", {
    token,
    body: { name: `test ${cidr}`, cidr, lighthouses },
  });
  expectStatus(response, 201);

  return response.json.id ?? response.json.projectId;
}

export interface KeyPair {
  publicKeyPem: string;
  privateKeyPem: string;
}

/** Makes an X25519 key pair with `nebula-cert keygen`. */
export async function nebulaKeygen(): Promise<KeyPair> {
  const dir = await Deno.makeTempDir({ prefix: "vsm-keygen-" });
  try {
    const output = await new Deno.Command("nebula-cert", {
      args: ["keygen", "-out-key", `${dir}/k`, "-out-pub", `${dir}/p`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!output.success) {
      throw new Error(
        `nebula-cert keygen failed: ${new TextDecoder().decode(output.stderr)}`,
      );
    }
    return {
      publicKeyPem: await Deno.readTextFile(`${dir}/p`),
      privateKeyPem: await Deno.readTextFile(`${dir}/k`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes every entry of a base64 ZIP bundle into `dir`; returns the names. */
export async function unpackBundle(
  base64: string,
  dir: string,
): Promise<string[]> {
  const zip = await JSZip.loadAsync(base64, { base64: true });
  const names: string[] = [];
  for (const entry of Object.values(zip.files)) {
    if (entry.dir) continue;
    // Entry names come from the server; keep them inside `dir`.
    if (entry.name.includes("/") || entry.name.includes("..")) {
      throw new Error(`bundle entry ${entry.name} is not a plain file name`);
    }
    await Deno.writeFile(
      `${dir}/${entry.name}`,
      await entry.async("uint8array"),
    );
    names.push(entry.name);
  }

  return names.sort();
}
