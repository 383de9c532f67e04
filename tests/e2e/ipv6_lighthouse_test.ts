/**
 * A lighthouse with an IPv6 endpoint, on generated configs and real `nebula`
 * daemons in two network namespaces. The device has no IPv4 address on the
 * underlay, so it can reach the lighthouse only over IPv6.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { createCa, signHostCertificate } from "../../shared/pki/ca.ts";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
import {
  generateNebulaConfig,
  type LighthouseEntry,
} from "../../shared/config/nebula_yml.ts";
import {
  canCreateNamespaces,
  createUnderlay,
  ip,
  listNamespaces,
  type Spawned,
  startTcpListener,
  tryTcpConnect,
  type Underlay,
} from "../support/netns.ts";

const CIDR = "10.78.0.0/24";
const PREFIX_LENGTH = 24;
const LIGHTHOUSE_IP = "10.78.0.1";
const DEVICE_IP = "10.78.0.2";
const PROJECT_GROUP = "vidsync-ipv6";
const NEBULA_PORT = 4343;
// Unique local addresses, assigned only inside this test's namespaces.
const LIGHTHOUSE_IPV6 = "fd00:b2::1";
const DEVICE_IPV6 = "fd00:b2::2";
// The generated firewall admits inbound TCP only on Syncthing's port.
const TCP_PORT = 22000;
// Local handshakes finish in milliseconds, so the budget covers daemon start.
const REACH_TIMEOUT_MS = 15_000;

/**
 * Gives both nodes an IPv6 address and takes the device's IPv4 address away.
 * `nodad` skips duplicate address detection, so the addresses work at once.
 */
async function moveDeviceToIpv6(underlay: Underlay): Promise<void> {
  const lighthouse = underlay.node("lighthouse").netns;
  const device = underlay.node("device").netns;
  await ip([
    "-n",
    lighthouse,
    "addr",
    "add",
    `${LIGHTHOUSE_IPV6}/64`,
    "dev",
    "eth0",
    "nodad",
  ]);
  await ip([
    "-n",
    device,
    "addr",
    "add",
    `${DEVICE_IPV6}/64`,
    "dev",
    "eth0",
    "nodad",
  ]);
  await ip(["-n", device, "-4", "addr", "flush", "dev", "eth0"]);
}

/** Writes ca.crt, node.crt, node.key and nebula.yml for one node into `dir`. */
async function writeNode(
  dir: string,
  ca: Awaited<ReturnType<typeof createCa>>,
  name: string,
  device: { ip: string; isLighthouse: boolean },
  lighthouses: LighthouseEntry[],
): Promise<string> {
  const keys = await generateX25519KeyPair();
  const certificate = await signHostCertificate({
    ca,
    caPrivateKey: ca.privateKey,
    publicKey: keys.publicKey,
    name,
    ip: device.ip,
    prefixLength: PREFIX_LENGTH,
    groups: [PROJECT_GROUP],
    now: new Date(),
    lifetimeSeconds: 3600,
  });
  const config = generateNebulaConfig({
    device: { ...device, prefixLength: PREFIX_LENGTH },
    lighthouses,
    projectGroup: PROJECT_GROUP,
    blocklist: [],
  });
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${dir}/ca.crt`, ca.pem);
  await Deno.writeTextFile(`${dir}/node.crt`, certificate.pem);
  await Deno.writeTextFile(`${dir}/node.key`, keys.privatePem);
  await Deno.writeTextFile(`${dir}/nebula.yml`, config);
  return config;
}

/** Returns the local addresses of UDP sockets on `port` in `node`, per `ss`. */
async function udpListeners(
  underlay: Underlay,
  node: string,
  port: number,
): Promise<string[]> {
  const result = await underlay.run(node, ["ss", "-H", "-u", "-l", "-n"]);
  return result.output
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[3] ?? "")
    .filter((local) => local.endsWith(`:${port}`));
}

async function connectWithin(
  underlay: Underlay,
  host: string,
  totalMs: number,
): Promise<string> {
  const deadline = Date.now() + totalMs;
  let last = "";
  while (Date.now() < deadline) {
    last = await tryTcpConnect(underlay, "device", host, TCP_PORT, 2000);
    if (last === "connected pong") return last;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return last;
}

Deno.test({
  name: "IPv6 lighthouse accepts a device over IPv6",
  ignore: !canCreateNamespaces(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const work = await Deno.makeTempDir({ prefix: "vsm-ipv6-" });
    const underlay = await createUnderlay(["lighthouse", "device"]);
    const names = [...underlay.nodes.values()].map((n) => n.netns);
    const daemons: Spawned[] = [];
    const logs = () => daemons.map((d) => d.output().slice(-3000)).join("\n");
    try {
      await moveDeviceToIpv6(underlay);
      const lighthouses = [{
        ip: LIGHTHOUSE_IP,
        endpoints: [
          `[${LIGHTHOUSE_IPV6}]:${NEBULA_PORT}`,
          `${underlay.node("lighthouse").underlayIp}:${NEBULA_PORT}`,
        ],
      }];
      const ca = await createCa({
        name: "ipv6 test",
        cidr: CIDR,
        notBefore: new Date(),
        notAfter: new Date(Date.now() + 86_400_000),
      });
      const lighthouseConfig = parse(
        await writeNode(`${work}/lighthouse`, ca, "lighthouse", {
          ip: LIGHTHOUSE_IP,
          isLighthouse: true,
        }, lighthouses),
      );
      const deviceConfig = parse(
        await writeNode(`${work}/device`, ca, "device", {
          ip: DEVICE_IP,
          isLighthouse: false,
        }, lighthouses),
      );

      assert.equal(lighthouseConfig.listen.host, "[::]");
      assert.equal(deviceConfig.listen.host, "[::]");

      // nebula resolves the relative pki paths in nebula.yml against its cwd.
      daemons.push(underlay.spawn(
        "lighthouse",
        ["nebula", "-config", "nebula.yml"],
        `${work}/lighthouse`,
      ));
      await startTcpListener(underlay, "lighthouse", TCP_PORT);
      let listeners: string[] = [];
      const deadline = Date.now() + 10_000;
      while (listeners.length === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        listeners = await udpListeners(underlay, "lighthouse", NEBULA_PORT);
      }
      // ss prints `*` for an IPv6 wildcard socket that also receives IPv4.
      assert.deepEqual(listeners, [`*:${NEBULA_PORT}`], logs());

      daemons.push(underlay.spawn(
        "device",
        ["nebula", "-config", "nebula.yml"],
        `${work}/device`,
      ));
      const result = await connectWithin(
        underlay,
        LIGHTHOUSE_IP,
        REACH_TIMEOUT_MS,
      );

      assert.equal(result, "connected pong", logs());
      assert.ok(
        daemons[0].output().includes(DEVICE_IPV6),
        `lighthouse log does not name ${DEVICE_IPV6}:\n${logs()}`,
      );
    } finally {
      await underlay.destroy();
      await Deno.remove(work, { recursive: true });
    }
    const left = await listNamespaces();
    for (const name of names) assert.ok(!left.includes(name), `${name} left`);
  },
});
