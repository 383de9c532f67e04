/**
 * `npm run demo`: the main job against a running local stack. Creates a user
 * and a project with one lighthouse, registers the lighthouse and two
 * devices, writes each bundle and private key to a folder, and checks each
 * certificate with `nebula-cert verify` and each config with `nebula -test`
 * when those programs are installed.
 *
 * Environment: VIDSYNC_MESH_URL (default http://127.0.0.1:54321) and
 * DEMO_OUT (default ./out/demo). The user comes from scripts/dev_user.ts,
 * which calls
 * the same stack's local-only /auth/v1/dev/users route.
 */
import JSZip from "jszip";
import { decodeBase64 } from "../shared/pki/base64.ts";
import { generateX25519KeyPair } from "../shared/pki/keys.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const BASE_URL = (Deno.env.get("VIDSYNC_MESH_URL") ?? "http://127.0.0.1:54321")
  .replace(/\/$/, "");
const FUNCTIONS_URL = `${BASE_URL}/functions/v1`;
const OUT_DIR = Deno.env.get("DEMO_OUT") ?? "out/demo";
const CIDR = "10.42.0.0/24";
const LIGHTHOUSE_IP = "10.42.0.1";
const LIGHTHOUSE_ENDPOINT = "192.0.2.10:4242";

interface KeyPair {
  publicPem: string;
  privatePem: string;
  source: string;
}

interface Check {
  name: string;
  ok: boolean | null;
  output: string;
}

interface Enrolled {
  name: string;
  dir: string;
  ip: string;
  fingerprint: string;
  status: number;
  checks: Check[];
}

async function runProgram(
  program: string,
  args: string[],
  cwd?: string,
  env?: Record<string, string>,
): Promise<{ ok: boolean; output: string } | null> {
  try {
    const result = await new Deno.Command(program, {
      args,
      cwd,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    const output = decoder.decode(result.stdout) +
      decoder.decode(result.stderr);
    return { ok: result.success, output: output.trim() };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Makes a key pair with `nebula-cert keygen`, or natively when it is missing. */
async function generateKeys(): Promise<KeyPair> {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-demo-" });
  try {
    const result = await runProgram("nebula-cert", [
      "keygen",
      "-out-key",
      `${dir}/key`,
      "-out-pub",
      `${dir}/pub`,
    ]);
    if (result?.ok) {
      return {
        publicPem: await Deno.readTextFile(`${dir}/pub`),
        privatePem: await Deno.readTextFile(`${dir}/key`),
        source: "nebula-cert keygen",
      };
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  const pair = await generateX25519KeyPair();
  return {
    publicPem: pair.publicPem,
    privatePem: pair.privatePem,
    source: "shared/pki X25519",
  };
}

async function call(
  method: string,
  path: string,
  token: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${FUNCTIONS_URL}/${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(
      `${method} ${path} failed with HTTP ${response.status}: ${text}`,
    );
  }

  return { status: response.status, json: JSON.parse(text) };
}

async function createUser(
  email: string,
): Promise<{ id: string; token: string }> {
  const result = await runProgram(
    Deno.execPath(),
    [
      "run",
      "-A",
      `${ROOT}scripts/dev_user.ts`,
      email,
    ],
    ROOT,
    { VIDSYNC_MESH_URL: BASE_URL },
  );
  if (!result?.ok) {
    throw new Error(`scripts/dev_user.ts ${email} failed: ${result?.output}`);
  }

  const line = result.output.split("\n").reverse().find((text) =>
    text.trimStart().startsWith("{")
  );
  const user = JSON.parse(line ?? "{}");
  return { id: user.id, token: user.access_token };
}

async function checkBundle(dir: string): Promise<Check[]> {
  const verify = await runProgram("nebula-cert", [
    "verify",
    "-ca",
    "ca.crt",
    "-crt",
    "node.crt",
  ], dir);
  const test = await runProgram(
    "nebula",
    ["-test", "-config", "nebula.yml"],
    dir,
  );

  return [
    {
      name: "nebula-cert verify",
      ok: verify?.ok ?? null,
      output: verify?.output ?? "",
    },
    { name: "nebula -test", ok: test?.ok ?? null, output: test?.output ?? "" },
  ];
}

async function enroll(
  token: string,
  projectId: string,
  name: string,
  lighthouse: boolean,
): Promise<Enrolled> {
  const keys = await generateKeys();
  const { status, json } = await call("POST", "nebula-register", token, {
    projectId,
    deviceId: crypto.randomUUID(),
    deviceName: name,
    publicKey: keys.publicPem,
    ...(lighthouse ? { lighthouse: true } : {}),
  });

  const dir = `${OUT_DIR}/${name}`;
  await Deno.mkdir(dir, { recursive: true });
  const zip = await JSZip.loadAsync(String(json.bundle), { base64: true });
  for (const entry of Object.values(zip.files)) {
    if (entry.dir || entry.name.includes("/") || entry.name.includes("..")) {
      continue;
    }
    await Deno.writeFile(
      `${dir}/${entry.name}`,
      await entry.async("uint8array"),
    );
  }
  await Deno.writeFile(`${dir}/bundle.zip`, decodeBase64(String(json.bundle)));
  // The private key never leaves this machine; only nebula reads it.
  await Deno.writeTextFile(`${dir}/node.key`, keys.privatePem, { mode: 0o600 });

  const certificate = json.certificate as { fingerprint: string };
  return {
    name: `${name} (key from ${keys.source})`,
    dir,
    ip: String(json.ip),
    fingerprint: certificate.fingerprint,
    status,
    checks: await checkBundle(dir),
  };
}

function describe(check: Check): string {
  if (check.ok === null) return `${check.name}: skipped, not installed`;
  if (check.ok) return `${check.name}: ok`;
  return `${check.name}: FAILED\n${
    check.output.split("\n").slice(-5).join("\n")
  }`;
}

async function main(): Promise<number> {
  const email = `demo-${Date.now()}@example.test`;
  const user = await createUser(email);
  const { json: project } = await call("POST", "nebula-project", user.token, {
    name: "VidSync demo",
    cidr: CIDR,
    lighthouses: [{
      ip: LIGHTHOUSE_IP,
      endpoints: [LIGHTHOUSE_ENDPOINT],
      name: "lighthouse",
    }],
  });
  const projectId = String(project.id ?? project.projectId);

  const enrolled = [
    await enroll(user.token, projectId, "lighthouse", true),
    await enroll(user.token, projectId, "laptop", false),
    await enroll(user.token, projectId, "workstation", false),
  ];

  console.log(`stack:   ${FUNCTIONS_URL}`);
  console.log(`user:    ${email} (${user.id})`);
  console.log(
    `project: ${projectId}, ${CIDR}, lighthouse ${LIGHTHOUSE_IP} at ${LIGHTHOUSE_ENDPOINT}`,
  );
  for (const device of enrolled) {
    console.log(`\n${device.name}: ${device.ip}, HTTP ${device.status}`);
    console.log(`  certificate ${device.fingerprint}`);
    console.log(`  bundle in ${device.dir}`);
    for (const check of device.checks) console.log(`  ${describe(check)}`);
  }
  const failed = enrolled.flatMap((d) => d.checks).filter((c) =>
    c.ok === false
  );
  console.log(
    failed.length === 0
      ? `\nall bundles written to ${OUT_DIR}; start one with: cd ${OUT_DIR}/laptop && sudo nebula -config nebula.yml`
      : `\n${failed.length} checks failed`,
  );

  return failed.length === 0 ? 0 : 1;
}

try {
  Deno.exit(await main());
} catch (error) {
  console.error(`demo failed: ${(error as Error).message}`);
  console.error(
    `is the stack running? start it with: npm start (it serves ${BASE_URL})`,
  );
  Deno.exit(1);
}
