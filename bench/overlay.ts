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
  /** listen.read_buffer of the generated nebula.yml, bytes; null when unset. */
  nebulaReadBuffer: number | null;
  /** CPU use during the timed runs. */
  cpu: OverlayCpu;
}

/** CPU use over the timed iperf3 runs, in cores (1 = one core fully busy). */
export interface OverlayCpu {
  cores: number;
  /** Receiving nebula daemon (namespace a), during the overlay runs. */
  receiverCores: number;
  /** Sending nebula daemon (namespace b), during the overlay runs. */
  senderCores: number;
  /** Whole machine, during the overlay runs. */
  machineCoresOverlay: number;
  /** Whole machine, during the plain runs. */
  machineCoresPlain: number;
}

/** Clock ticks per second of /proc times (USER_HZ), 100 on Linux. */
const USER_HZ = 100;

/** Returns the user and system CPU ticks a process has used so far. */
async function processTicks(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name, which may hold spaces, start at field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** Returns the machine's busy and total CPU ticks, over all cores, from /proc/stat. */
async function machineTicks(): Promise<{ busy: number; total: number }> {
  const line = (await Deno.readTextFile("/proc/stat")).split("\n")[0];
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((sum, value) => sum + value, 0);
  const idle = ticks[3] + ticks[4];
  return { busy: total - idle, total };
}

/** Sums the CPU ticks of the machine and of `pids` over the runs passed to `measure`. */
class CpuMeter {
  machineBusy = 0;
  machineTotal = 0;
  /** Ticks per pid, in the order of `pids`. */
  processes: number[];

  constructor(private readonly pids: number[]) {
    this.processes = pids.map(() => 0);
  }

  async measure<T>(run: () => Promise<T>): Promise<T> {
    const before = await this.sample();
    const result = await run();
    const after = await this.sample();
    this.machineBusy += after.machine.busy - before.machine.busy;
    this.machineTotal += after.machine.total - before.machine.total;
    after.processes.forEach((ticks, index) => {
      this.processes[index] += ticks - before.processes[index];
    });
    return result;
  }

  /** Busy cores of the machine over the measured runs. */
  machineCores(cores: number): number {
    return this.machineTotal === 0
      ? 0
      : this.machineBusy / this.machineTotal * cores;
  }

  private async sample() {
    const machine = await machineTicks();
    const processes: number[] = [];
    for (const pid of this.pids) processes.push(await processTicks(pid));
    return { machine, processes };
  }
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
    const nebulaPids = [children[0].pid, children[1].pid];
    const plainMeter = new CpuMeter([]);
    const overlayMeter = new CpuMeter(nebulaPids);
    let overlaySeconds = 0;
    for (let index = 0; index < rounds; index++) {
      plain.push(
        await plainMeter.measure(() => iperf(names.b, LINK.a, secondsPerRun)),
      );
      const started = performance.now();
      overlay.push(
        await overlayMeter.measure(() =>
          iperf(names.b, OVERLAY.a, secondsPerRun)
        ),
      );
      overlaySeconds += (performance.now() - started) / 1000;
    }
    const cores = navigator.hardwareConcurrency;

    const parsedConfigB = parse(await Deno.readTextFile(configB)) as {
      tun: { mtu: number };
      listen: { read_buffer?: number };
    };
    const plainMbps = median(plain);
    const overlayMbps = median(overlay);
    return {
      linkRate: RATE,
      rounds,
      secondsPerRun,
      plainMbps: round(plainMbps),
      overlayMbps: round(overlayMbps),
      ratio: round(overlayMbps / plainMbps),
      nebulaMtu: parsedConfigB.tun.mtu,
      nebulaReadBuffer: parsedConfigB.listen.read_buffer ?? null,
      cpu: {
        cores,
        receiverCores: round(
          overlayMeter.processes[0] / USER_HZ / overlaySeconds,
        ),
        senderCores: round(
          overlayMeter.processes[1] / USER_HZ / overlaySeconds,
        ),
        machineCoresOverlay: round(overlayMeter.machineCores(cores)),
        machineCoresPlain: round(plainMeter.machineCores(cores)),
      },
    };
  } finally {
    for (const child of children.reverse()) await child.stop();
    for (const netns of [names.a, names.b]) {
      await run("ip", ["netns", "del", netns]).catch(() => {});
    }
    await Deno.remove(dir, { recursive: true });
  }
}
