/**
 * Nebula overlay throughput against the plain link it runs on. Two network
 * namespaces made here are joined by one veth pair, shaped to 1 Gbit/s with
 * `tc tbf` on both ends. `iperf3` measures TCP throughput between them
 * directly and then through `nebula` daemons whose certificates and
 * nebula.yml come from the product (shared/pki and shared/config). Traffic
 * stays inside these namespaces; they and the processes started in them are
 * removed in `finally`.
 *
 * Needs root, iproute2, tc, /dev/net/tun, nebula and iperf3.
 */
import { generateNebulaConfig } from "../shared/config/nebula_yml.ts";
import { projectGroup } from "../shared/handlers/signer.ts";
import {
  createCa,
  type ProjectCa,
  signHostCertificate,
} from "../shared/pki/ca.ts";
import { generateX25519KeyPair } from "../shared/pki/keys.ts";
import { parse } from "yaml";
import { median, round } from "./stats.ts";

const OVERLAY_CIDR = "10.99.0.0/24";
const OVERLAY = { a: "10.99.0.1", b: "10.99.0.2" };
// This subnet exists only on the veth pair between the two namespaces.
const LINK = { a: "10.214.0.1", b: "10.214.0.2" };
const NEBULA_PORT = 4242;
// The generated firewall admits inbound TCP only on Syncthing's port.
const IPERF_PORT = 22000;
const RATE = "1gbit";

export interface OverlayFigures {
  linkRate: string;
  rounds: number;
  secondsPerRun: number;
  /** Median TCP throughput over the shaped veth link, Mbit/s. */
  plainMbps: number;
  /** Median TCP throughput through Nebula over the same link, Mbit/s. */
  overlayMbps: number;
  /** overlayMbps / plainMbps. */
  ratio: number;
  nebulaMtu: number;
}

interface Child {
  pid: number;
  output(): string;
  stop(): Promise<void>;
}

/** Returns why the overlay benchmark cannot run here, or null when it can. */
export function overlayUnavailable(): string | null {
  if (Deno.build.os !== "linux") return "needs Linux network namespaces";
  if (Deno.uid() !== 0) return "needs root to create network namespaces";
  try {
    Deno.statSync("/dev/net/tun");
  } catch {
    return "needs /dev/net/tun";
  }
  for (const program of ["ip", "tc", "nebula", "iperf3"]) {
    const found = new Deno.Command("sh", {
      args: ["-c", `command -v ${program}`],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
    if (!found) return `needs ${program} on PATH`;
  }
  return null;
}

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`${command} ${args.join(" ")} failed: ${stderr}${stdout}`);
  }
  return stdout;
}

function spawnIn(netns: string, args: string[]): Child {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      text = (text + decoder.decode(chunk, { stream: true })).slice(-16384);
    }
  };
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]);

  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }, 2000);
    await child.status;
    clearTimeout(timer);
    await drained;
  };

  return { pid: child.pid, output: () => text, stop };
}

/** Creates namespaces `a` and `b` joined by a veth pair shaped to RATE in both directions. */
async function createLink(names: { a: string; b: string }): Promise<void> {
  await run("ip", ["netns", "add", names.a]);
  await run("ip", ["netns", "add", names.b]);
  await run("ip", [
    "-n",
    names.a,
    "link",
    "add",
    "veth0",
    "type",
    "veth",
    "peer",
    "name",
    "veth0",
    "netns",
    names.b,
  ]);
  for (const side of ["a", "b"] as const) {
    const netns = names[side];
    await run("ip", ["-n", netns, "link", "set", "lo", "up"]);
    await run("ip", [
      "-n",
      netns,
      "addr",
      "add",
      `${LINK[side]}/24`,
      "dev",
      "veth0",
    ]);
    await run("ip", ["-n", netns, "link", "set", "veth0", "up"]);
    // The burst must exceed one GSO segment (64 KiB), or tbf drops it.
    await run("ip", [
      "netns",
      "exec",
      netns,
      "tc",
      "qdisc",
      "add",
      "dev",
      "veth0",
      "root",
      "tbf",
      "rate",
      RATE,
      "burst",
      "1mb",
      "latency",
      "10ms",
    ]);
  }
}

/** Writes one node's certificate, key and product-generated nebula.yml into `dir`. */
async function writeNode(
  dir: string,
  ca: ProjectCa,
  projectId: string,
  node: { name: string; ip: string; isLighthouse: boolean },
): Promise<string> {
  const keys = await generateX25519KeyPair();
  const now = new Date();
  const group = projectGroup(projectId);
  const certificate = await signHostCertificate({
    ca,
    caPrivateKey: ca.privateKey,
    publicKey: keys.publicKey,
    name: node.name,
    ip: node.ip,
    prefixLength: 24,
    groups: [group],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 3_600_000),
  });
  const config = generateNebulaConfig({
    device: { ip: node.ip, prefixLength: 24, isLighthouse: node.isLighthouse },
    lighthouses: [{ ip: OVERLAY.a, endpoints: [`${LINK.a}:${NEBULA_PORT}`] }],
    projectGroup: group,
    blocklist: [],
    pki: {
      ca: `${dir}/ca.crt`,
      cert: `${dir}/node.crt`,
      key: `${dir}/node.key`,
    },
  });
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/ca.crt`, ca.pem);
  await Deno.writeTextFile(`${dir}/node.crt`, certificate.pem);
  await Deno.writeTextFile(`${dir}/node.key`, keys.privatePem, { mode: 0o600 });
  await Deno.writeTextFile(`${dir}/nebula.yml`, config);
  return `${dir}/nebula.yml`;
}

/** Waits until a one-second iperf3 run from `b` through the overlay succeeds; it doubles as warm-up. */
async function waitForOverlay(netnsB: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const probe = await new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        netnsB,
        "iperf3",
        "-c",
        OVERLAY.a,
        "-p",
        String(IPERF_PORT),
        "-t",
        "1",
        "--connect-timeout",
        "1000",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (probe.success) return;
    last = new TextDecoder().decode(probe.stderr).trim();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(
    `iperf3 through the overlay to ${OVERLAY.a} failed for ${timeoutMs} ms: ${last}`,
  );
}

/** One iperf3 TCP run from `b` to `host`; returns the receiver's throughput in Mbit/s. */
async function iperf(netnsB: string, host: string, seconds: number) {
  const output = await run("ip", [
    "netns",
    "exec",
    netnsB,
    "iperf3",
    "-c",
    host,
    "-p",
    String(IPERF_PORT),
    "-t",
    String(seconds),
    "-O",
    "1",
    "-J",
  ]);
  const report = JSON.parse(output);

  return report.end.sum_received.bits_per_second / 1e6;
}

/** Measures plain and overlay throughput, alternating, `rounds` times each. */
export async function benchmarkOverlay(
  rounds: number,
  secondsPerRun: number,
): Promise<OverlayFigures> {
  const tag = Array.from(
    crypto.getRandomValues(new Uint8Array(3)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const names = { a: `vsb-${tag}-a`, b: `vsb-${tag}-b` };
  const dir = await Deno.makeTempDir({ prefix: "vidsync-bench-overlay-" });
  const children: Child[] = [];
  try {
    await createLink(names);
    const now = new Date();
    const ca = await createCa({
      name: "overlay benchmark",
      cidr: OVERLAY_CIDR,
      notBefore: new Date(now.getTime() - 120_000),
      notAfter: new Date(now.getTime() + 86_400_000),
    });
    const projectId = crypto.randomUUID();
    const configA = await writeNode(`${dir}/a`, ca, projectId, {
      name: "bench-a",
      ip: OVERLAY.a,
      isLighthouse: true,
    });
    const configB = await writeNode(`${dir}/b`, ca, projectId, {
      name: "bench-b",
      ip: OVERLAY.b,
      isLighthouse: false,
    });
    children.push(spawnIn(names.a, ["nebula", "-config", configA]));
    children.push(spawnIn(names.b, ["nebula", "-config", configB]));
    children.push(spawnIn(names.a, ["iperf3", "-s", "-p", String(IPERF_PORT)]));
    await waitForOverlay(names.b, 20_000).catch((error) => {
      const logs = children.map((child) => child.output()).join("\n");
      throw new Error(`${(error as Error).message}\n${logs}`);
    });

    const plain: number[] = [];
    const overlay: number[] = [];
    for (let index = 0; index < rounds; index++) {
      plain.push(await iperf(names.b, LINK.a, secondsPerRun));
      overlay.push(await iperf(names.b, OVERLAY.a, secondsPerRun));
    }

    const plainMbps = median(plain);
    const overlayMbps = median(overlay);
    return {
      linkRate: RATE,
      rounds,
      secondsPerRun,
      plainMbps: round(plainMbps),
      overlayMbps: round(overlayMbps),
      ratio: round(overlayMbps / plainMbps),
      nebulaMtu: (parse(await Deno.readTextFile(configB)) as {
        tun: { mtu: number };
      }).tun.mtu,
    };
  } finally {
    for (const child of children.reverse()) await child.stop();
    for (const netns of [names.a, names.b]) {
      await run("ip", ["netns", "del", netns]).catch(() => {});
    }
    await Deno.remove(dir, { recursive: true });
  }
}
