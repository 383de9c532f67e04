/**
 * Network namespaces for end-to-end tests: one namespace per node, each
 * joined by a veth pair to a bridge inside a further namespace, so the
 * underlay links only these namespaces and nothing on the host. Names are
 * `vsm-<random>-<node>`, unique per run. Nebula daemons and other programs
 * run inside with `ip netns exec`; their PIDs are recorded and only those
 * are ended. Everything is removed by `destroy()` and, should the test
 * process exit first, by an `unload` handler.
 *
 * Needs root, iproute2 and, for nebula, /dev/net/tun.
 */

export interface Node {
  /** Short name given by the test, e.g. `lighthouse`. */
  name: string;
  /** Network namespace name. */
  netns: string;
  /** IPv4 address on the underlay, without prefix. */
  underlayIp: string;
}

export interface Spawned {
  pid: number;
  /** Resolves with the exit status; stdout and stderr are collected. */
  status: Promise<Deno.CommandStatus>;
  /** Output so far (stdout and stderr interleaved by chunk). */
  output(): string;
  /** Sends SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface Underlay extends AsyncDisposable {
  nodes: Map<string, Node>;
  node(name: string): Node;
  /** Starts `args` inside the node's namespace, in `cwd`. */
  spawn(node: string, args: string[], cwd?: string): Spawned;
  /** Runs `args` inside the node's namespace and waits, at most `timeoutMs`. */
  run(
    node: string,
    args: string[],
    timeoutMs?: number,
  ): Promise<{ code: number; output: string }>;
  destroy(): Promise<void>;
}

// The underlay subnet exists only inside the namespaces this module creates.
const UNDERLAY_PREFIX = "10.213.0";
const UNDERLAY_MASK = 24;
const BRIDGE = "br0";

function ipSync(args: string[]): void {
  new Deno.Command("ip", { args, stdout: "null", stderr: "null" })
    .outputSync();
}

/** Runs `ip` with `args` and throws with its stderr when it fails. */
export async function ip(args: string[]): Promise<void> {
  const output = await new Deno.Command("ip", {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`ip ${args.join(" ")} failed: ${stderr}`);
  }
}

/** Checks whether this process can create namespaces and tun devices. */
export function canCreateNamespaces(): boolean {
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) return false;
  try {
    Deno.statSync("/dev/net/tun");
    new Deno.Command("ip", { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

function randomTag(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function createBridge(netns: string): Promise<void> {
  await ip(["netns", "add", netns]);
  await ip(["-n", netns, "link", "set", "lo", "up"]);
  await ip(["-n", netns, "link", "add", BRIDGE, "type", "bridge"]);
  await ip(["-n", netns, "link", "set", BRIDGE, "up"]);
}

async function attachNode(
  bridgeNetns: string,
  node: Node,
  port: string,
): Promise<void> {
  await ip(["netns", "add", node.netns]);
  await ip(["-n", node.netns, "link", "set", "lo", "up"]);
  // Both ends are created inside namespaces, so the host's links are untouched.
  await ip([
    "-n",
    bridgeNetns,
    "link",
    "add",
    port,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    node.netns,
  ]);
  await ip(["-n", bridgeNetns, "link", "set", port, "master", BRIDGE]);
  await ip(["-n", bridgeNetns, "link", "set", port, "up"]);
  await ip([
    "-n",
    node.netns,
    "addr",
    "add",
    `${node.underlayIp}/${UNDERLAY_MASK}`,
    "dev",
    "eth0",
  ]);
  await ip(["-n", node.netns, "link", "set", "eth0", "up"]);
}

function spawnIn(netns: string, args: string[], cwd?: string): Spawned {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let text = "";
  const decoder = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      text = (text + decoder.decode(chunk, { stream: true })).slice(-65536);
    }
  };
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const status = child.status.then(async (s) => {
    await drained;
    return s;
  });

  let exited = false;
  status.then(() => exited = true);

  const stop = async (graceMs = 2000) => {
    if (exited) return;
    try {
      child.kill("SIGTERM");
    } catch {
      // Exited between the check and the signal.
    }
    const timer = setTimeout(() => {
      if (!exited) child.kill("SIGKILL");
    }, graceMs);
    await status;
    clearTimeout(timer);
  };

  return { pid: child.pid, status, output: () => text, stop };
}

/**
 * Creates one namespace per name in `nodeNames`, all on one bridged /24.
 * Removes whatever it created when any step fails.
 */
export async function createUnderlay(nodeNames: string[]): Promise<Underlay> {
  const tag = randomTag();
  const bridgeNetns = `vsm-${tag}-br`;
  const created: string[] = [];
  const nodes = new Map<string, Node>();
  const running = new Map<number, Spawned>();

  const removeAllSync = () => {
    for (const { pid } of running.values()) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Already exited.
      }
    }
    for (const netns of created) ipSync(["netns", "del", netns]);
  };
  globalThis.addEventListener("unload", removeAllSync);

  const destroy = async () => {
    globalThis.removeEventListener("unload", removeAllSync);
    await Promise.all([...running.values()].map((p) => p.stop(1000)));
    running.clear();
    for (const netns of created.splice(0)) {
      await ip(["netns", "del", netns]).catch(() => {});
    }
  };

  try {
    created.push(bridgeNetns);
    await createBridge(bridgeNetns);
    for (const [index, name] of nodeNames.entries()) {
      const node = {
        name,
        netns: `vsm-${tag}-${name}`.slice(0, 40),
        underlayIp: `${UNDERLAY_PREFIX}.${index + 10}`,
      };
      created.push(node.netns);
      await attachNode(bridgeNetns, node, `p${index}`);
      nodes.set(name, node);
    }
  } catch (error) {
    await destroy();
    throw error;
  }

  const node = (name: string) => {
    const found = nodes.get(name);
    if (!found) throw new Error(`no node named ${name} in this underlay`);
    return found;
  };

  const spawn = (name: string, args: string[], cwd?: string) => {
    const spawned = spawnIn(node(name).netns, args, cwd);
    running.set(spawned.pid, spawned);
    spawned.status.then(() => running.delete(spawned.pid));
    return spawned;
  };

  const run = async (name: string, args: string[], timeoutMs = 10_000) => {
    const spawned = spawn(name, args);
    const timer = setTimeout(() => spawned.stop(500), timeoutMs);
    const status = await spawned.status;
    clearTimeout(timer);
    return { code: status.code, output: spawned.output() };
  };

  return {
    nodes,
    node,
    spawn,
    run,
    destroy,
    [Symbol.asyncDispose]: destroy,
  };
}

/** Lists namespaces whose name starts with `prefix` (for leak checks). */
export async function listNamespaces(prefix = "vsm-"): Promise<string[]> {
  const output = await new Deno.Command("ip", {
    args: ["netns", "list"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(output.stdout)
    .split("\n")
    .map((line) => line.split(" ")[0])
    .filter((name) => name.startsWith(prefix));
}

// Small TCP programs run by this same Deno binary inside a namespace.
const LISTENER = `
const listener = Deno.listen({ hostname: "0.0.0.0", port: Number(Deno.args[0]) });
console.log("listening");
for await (const conn of listener) {
  conn.write(new TextEncoder().encode("pong\\n")).finally(() => conn.close());
}`;

const CONNECTOR = `
const [hostname, port, timeoutMs] = Deno.args;
const timer = setTimeout(() => { console.log("timeout"); Deno.exit(2); }, Number(timeoutMs));
try {
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const buffer = new Uint8Array(16);
  const n = await conn.read(buffer);
  console.log("connected " + new TextDecoder().decode(buffer.subarray(0, n ?? 0)).trim());
  conn.close();
  clearTimeout(timer);
  Deno.exit(0);
} catch (error) {
  console.log("failed " + error.name);
  Deno.exit(1);
}`;

/** Starts a TCP server in `node` that writes `pong` to every connection. */
export async function startTcpListener(
  underlay: Underlay,
  node: string,
  port: number,
): Promise<Spawned> {
  const spawned = underlay.spawn(node, [
    Deno.execPath(),
    "eval",
    LISTENER,
    String(port),
  ]);
  const deadline = Date.now() + 10_000;
  while (!spawned.output().includes("listening")) {
    if (Date.now() > deadline) {
      await spawned.stop(100);
      throw new Error(
        `TCP listener in ${node} did not start: ${spawned.output()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return spawned;
}

/**
 * Opens one TCP connection from `node` to `host:port` and reads the first
 * line. Returns `connected pong`, `failed <error>` or `timeout`.
 */
export async function tryTcpConnect(
  underlay: Underlay,
  node: string,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<string> {
  const result = await underlay.run(node, [
    Deno.execPath(),
    "eval",
    CONNECTOR,
    host,
    String(port),
    String(timeoutMs),
  ], timeoutMs + 5000);
  return result.output.trim().split("\n").at(-1) ?? "";
}
