/**
 * Registration over HTTP: the local stack (`local/server.ts`) runs as its own
 * process on a PostgreSQL database cloned from the migrated template, and
 * this process sends `POST /nebula-register` requests at several
 * concurrencies. In the same run it measures the floor in-process: one
 * database round trip, one signature and one ZIP, which every registration
 * needs at the least.
 */
import postgres from "postgres";
import { buildBundle, bundleReadme } from "../shared/bundle/mod.ts";
import { generateNebulaConfig } from "../shared/config/nebula_yml.ts";
import { connectPostgres } from "../shared/db/postgres.ts";
import { createCa, signHostCertificate } from "../shared/pki/ca.ts";
import { generateX25519KeyPair } from "../shared/pki/keys.ts";
import { encodeBase64 } from "../shared/pki/base64.ts";
import { TEMPLATE_NAME, withDatabase } from "../tests/support/template.ts";
import { liftRateLimits } from "./database.ts";
import { median, p99, round, timed } from "./stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CIDR = "10.150.0.0/16";
const LIGHTHOUSE_IP = "10.150.0.1";
// Documentation address (RFC 5737): the config names it, nothing sends to it.
const LIGHTHOUSE_ENDPOINT = "192.0.2.1:4242";
const WARMUP_REQUESTS = 30;

export interface ConcurrencyFigure {
  concurrency: number;
  requests: number;
  failed: number;
  seconds: number;
  perSecond: number;
  medianMs: number;
  p99Ms: number;
}

export interface FloorFigure {
  samples: number;
  /** Median of the three steps run one after another. */
  medianMs: number;
  roundTripMedianMs: number;
  /**
   * Median of `select $1::int` on the same connection, timed beside the
   * floor but not part of it: what one statement with a parameter costs.
   */
  parameterRoundTripMedianMs: number;
  signMedianMs: number;
  zipMedianMs: number;
}

export interface RegistrationFigures {
  /** Concurrency 1 on the project just created, before its pool has planner statistics. */
  coldRun: ConcurrencyFigure & { autoanalyzed: boolean };
  /** The levels, run after ANALYZE of the pool (what autovacuum does within about a minute). */
  runs: ConcurrencyFigure[];
  floor: FloorFigure;
  /** Median latency of the cold run divided by the floor's median. */
  coldRatioToFloor: number;
  /** Median latency of the first level (concurrency 1, analyzed pool) divided by the floor's median. */
  ratioToFloor: number;
  memory: {
    /** VmHWM of the local stack process once it listened, before any registration. */
    startupPeakMiB: number;
    /** VmHWM after every registration run. */
    peakMiB: number;
    /** VmRSS after every registration run. */
    residentMiB: number;
  };
}

export interface RegistrationOptions {
  /** Concurrency levels in the order they run; the first is compared with the floor. */
  levels: { concurrency: number; requests: number }[];
  floorSamples: number;
}

interface ServerProcess {
  pid: number;
  functionsUrl: string;
  origin: string;
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Reads a `Vm*` line of /proc/<pid>/status in MiB. */
export function readVmMiB(pid: number, field: "VmHWM" | "VmRSS"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  if (!match) throw new Error(`${field} missing from /proc/${pid}/status`);

  return round(Number(match[1]) / 1024);
}

async function waitUntilListening(url: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const response = await fetch(
      `${url}/nebula-ca?projectId=${crypto.randomUUID()}`,
    )
      .catch(() => null);
    await response?.body?.cancel();
    if (response) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `local stack did not respond on ${url} within ${timeoutMs} ms`,
  );
}

/** Starts `local/server.ts` as `npm start` does, on `databaseUrl`, with its log drained. */
async function startServer(databaseUrl: string): Promise<ServerProcess> {
  const port = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "vidsync-bench-stack-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}local/server.ts`],
    cwd: ROOT,
    env: {
      PORT: String(port),
      DATABASE_URL: databaseUrl,
      LOCAL_DATA_DIR: dataDir,
      NEBULA_CA_KEK: encodeBase64(crypto.getRandomValues(new Uint8Array(32))),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // One log line per request: keep only the tail for error messages.
  let tail = "";
  const decoder = new TextDecoder();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-8192);
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);

  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    await child.status;
    clearTimeout(timer);
    await drained;
    await Deno.remove(dataDir, { recursive: true });
  };

  const origin = `http://127.0.0.1:${port}`;
  const functionsUrl = `${origin}/functions/v1`;
  try {
    await waitUntilListening(functionsUrl, 30_000);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${tail}`);
  }
  return { pid: child.pid, functionsUrl, origin, stop };
}

async function postJson(
  url: string,
  body: unknown,
  token?: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });

  return { status: response.status, json: await response.json() };
}

/** Creates a user through the stack's local-only dev route and a /16 project owned by it. */
async function setUpProject(server: ServerProcess) {
  const user = await postJson(`${server.origin}/auth/v1/dev/users`, {
    email: `bench-${crypto.randomUUID()}@bench.test`,
  });
  const token = user.json.access_token as string;
  const project = await postJson(`${server.functionsUrl}/nebula-project`, {
    name: "registration benchmark",
    cidr: CIDR,
    lighthouses: [{ ip: LIGHTHOUSE_IP, endpoints: [LIGHTHOUSE_ENDPOINT] }],
  }, token);
  if (project.status !== 201) {
    throw new Error(`project setup failed: ${JSON.stringify(project.json)}`);
  }

  return { token, projectId: project.json.id as string };
}

/** Sends `requests` registrations of new devices, `concurrency` at a time. */
async function runConcurrency(
  server: ServerProcess,
  target: { token: string; projectId: string },
  concurrency: number,
  requests: number,
): Promise<ConcurrencyFigure> {
  // Keys are made before the clock starts: a device generates its own.
  const keys = await Promise.all(
    Array.from({ length: requests }, () => generateX25519KeyPair()),
  );
  const times: number[] = [];
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const index = next++;
      const { ms, value } = await timed(() =>
        postJson(`${server.functionsUrl}/nebula-register`, {
          projectId: target.projectId,
          deviceId: crypto.randomUUID(),
          deviceName: `bench-${concurrency}-${index}`,
          publicKey: keys[index].publicPem,
        }, target.token)
      );
      times.push(ms);
      if (value.status !== 201) failed++;
    }
  };
  const wall = await timed(() =>
    Promise.all(Array.from({ length: concurrency }, worker))
  );

  return {
    concurrency,
    requests,
    failed,
    seconds: round(wall.ms / 1000),
    perSecond: round(requests / (wall.ms / 1000)),
    medianMs: round(median(times)),
    p99Ms: round(p99(times)),
  };
}

/** Times one database round trip, one signature and one ZIP, in this process. */
async function measureFloor(
  databaseUrl: string,
  samples: number,
): Promise<FloorFigure> {
  const db = connectPostgres(databaseUrl, { max: 1 });
  const now = new Date();
  const ca = await createCa({
    name: "bench floor",
    cidr: CIDR,
    notBefore: now,
    notAfter: new Date(now.getTime() + 365 * 86_400_000),
  });
  const keys = await generateX25519KeyPair();
  const notAfter = new Date(now.getTime() + 30 * 86_400_000);
  const configYaml = generateNebulaConfig({
    device: { ip: "10.150.0.2", prefixLength: 16, isLighthouse: false },
    lighthouses: [{ ip: LIGHTHOUSE_IP, endpoints: [LIGHTHOUSE_ENDPOINT] }],
    projectGroup: `project:${crypto.randomUUID()}`,
    blocklist: [],
  });

  const totals: number[] = [];
  const roundTrips: number[] = [];
  const parameterRoundTrips: number[] = [];
  const signs: number[] = [];
  const zips: number[] = [];
  try {
    await db.query("select 1");
    for (let index = 0; index < samples; index++) {
      const roundTrip = await timed(() => db.query("select 1"));
      const parameterRoundTrip = await timed(() =>
        db.query("select $1::int", [index])
      );
      const sign = await timed(() =>
        signHostCertificate({
          ca,
          caPrivateKey: ca.privateKey,
          publicKey: keys.publicKey,
          name: `floor-${index}`,
          ip: "10.150.0.2",
          prefixLength: 16,
          groups: ["bench"],
          notBefore: now,
          notAfter,
        })
      );
      const zip = await timed(() =>
        buildBundle({
          caPem: ca.pem,
          certificatePem: sign.value.pem,
          configYaml,
          readme: bundleReadme({
            projectName: "bench",
            deviceName: `floor-${index}`,
            ip: "10.150.0.2",
            prefixLength: 16,
            notAfter,
            isLighthouse: false,
            listenPort: 0,
          }),
        })
      );
      roundTrips.push(roundTrip.ms);
      parameterRoundTrips.push(parameterRoundTrip.ms);
      signs.push(sign.ms);
      zips.push(zip.ms);
      totals.push(roundTrip.ms + sign.ms + zip.ms);
    }
  } finally {
    await db.close();
  }

  return {
    samples,
    medianMs: round(median(totals)),
    roundTripMedianMs: round(median(roundTrips)),
    parameterRoundTripMedianMs: round(median(parameterRoundTrips)),
    signMedianMs: round(median(signs)),
    zipMedianMs: round(median(zips)),
  };
}

/** Returns true when autovacuum has analyzed the pool table since the database was created. */
async function wasAutoanalyzed(databaseUrl: string): Promise<boolean> {
  const db = connectPostgres(databaseUrl, { max: 1 });
  try {
    const [row] = await db.query<{ analyzed: boolean }>(
      `select autoanalyze_count > 0 as analyzed from pg_stat_user_tables
       where relid = 'public.nebula_ip_pool'::regclass`,
    );
    return row.analyzed;
  } finally {
    await db.close();
  }
}

/** Gives the planner statistics for the pool, as autovacuum would. */
async function analyzePool(databaseUrl: string): Promise<void> {
  const db = connectPostgres(databaseUrl, { max: 1 });
  try {
    await db.exec("analyze public.nebula_ip_pool");
  } finally {
    await db.close();
  }
}

/** Runs the registration load and the floor on a fresh clone of the template. */
export async function benchmarkRegistration(
  serverUrl: string,
  options: RegistrationOptions,
): Promise<RegistrationFigures> {
  const name = `bench_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name} template ${TEMPLATE_NAME}`);
  await liftRateLimits(withDatabase(serverUrl, name));
  const databaseUrl = withDatabase(serverUrl, name);
  let server: ServerProcess | undefined;
  try {
    server = await startServer(databaseUrl);
    const startupPeakMiB = readVmMiB(server.pid, "VmHWM");
    // Warm up the JIT and the connections on a project of its own, so the
    // measured project is as fresh as one a user has just created.
    await runConcurrency(
      server,
      await setUpProject(server),
      1,
      WARMUP_REQUESTS,
    );
    const target = await setUpProject(server);
    const cold = await runConcurrency(
      server,
      target,
      1,
      options.levels[0].requests,
    );
    const coldRun = {
      ...cold,
      autoanalyzed: await wasAutoanalyzed(databaseUrl),
    };
    await analyzePool(databaseUrl);

    const runs: ConcurrencyFigure[] = [];
    let floor: FloorFigure | undefined;
    for (const { concurrency, requests } of options.levels) {
      runs.push(await runConcurrency(server, target, concurrency, requests));
      // Right after the first run, so both see the same machine state.
      floor ??= await measureFloor(databaseUrl, options.floorSamples);
    }
    const memory = {
      startupPeakMiB,
      peakMiB: readVmMiB(server.pid, "VmHWM"),
      residentMiB: readVmMiB(server.pid, "VmRSS"),
    };

    return {
      coldRun,
      coldRatioToFloor: round(coldRun.medianMs / floor!.medianMs),
      runs,
      floor: floor!,
      ratioToFloor: round(runs[0].medianMs / floor!.medianMs),
      memory,
    };
  } finally {
    await server?.stop();
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}
