/**
 * The main job end to end. Bundles fetched over HTTP from the local stack
 * (on real PostgreSQL) run real `nebula` daemons in three network
 * namespaces, and device A reaches device B over the overlay. After B is
 * released, A gets a config with B on its blocklist by registering again.
 * Restarted with it, A rejects B but still reaches the lighthouse.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { createTestDatabase } from "../support/db.ts";
import {
  canCreateNamespaces,
  createUnderlay,
  listNamespaces,
  type Spawned,
  startTcpListener,
  tryTcpConnect,
  type Underlay,
} from "../support/netns.ts";
import {
  api,
  createDevUser,
  createProject,
  expectStatus,
  type KeyPair,
  type LocalStack,
  nebulaKeygen,
  stackUnavailable,
  startLocalStack,
  unpackBundle,
} from "./stack.ts";

const CIDR = "10.77.0.0/24";
const LIGHTHOUSE_IP = "10.77.0.1";
const NEBULA_PORT = 4242;
// The generated firewall admits inbound TCP only on Syncthing's port.
const TCP_PORT = 22000;
// Local handshakes finish in milliseconds; the budget covers daemon start.
const REACH_TIMEOUT_MS = 15_000;
// Once A has B on its blocklist, every attempt to reach B must fail this long.
const BLOCKED_WINDOW_MS = 6_000;

interface Enrolled {
  node: string;
  deviceId: string;
  keys: KeyPair;
  dir: string;
  ip: string;
  fingerprint: string;
  daemon?: Spawned;
}

async function register(
  stack: LocalStack,
  token: string,
  projectId: string,
  enrolled: Enrolled,
  lighthouse: boolean,
) {
  const response = await api(stack, "POST", "nebula-register", {
    token,
    body: {
      projectId,
      deviceId: enrolled.deviceId,
      deviceName: enrolled.node,
      publicKey: enrolled.keys.publicKeyPem,
      ...(lighthouse ? { lighthouse: true } : {}),
    },
  });
  expectStatus(response, 200, 201);

  const names = await unpackBundle(response.json.bundle, enrolled.dir);
  await Deno.writeTextFile(
    `${enrolled.dir}/node.key`,
    enrolled.keys.privateKeyPem,
  );
  return { response, names };
}

async function enroll(
  stack: LocalStack,
  token: string,
  projectId: string,
  work: string,
  node: string,
  lighthouse: boolean,
): Promise<Enrolled> {
  const enrolled: Enrolled = {
    node,
    deviceId: crypto.randomUUID(),
    keys: await nebulaKeygen(),
    dir: `${work}/${node}`,
    ip: "",
    fingerprint: "",
  };
  await Deno.mkdir(enrolled.dir);

  const { response, names } = await register(
    stack,
    token,
    projectId,
    enrolled,
    lighthouse,
  );

  assert.equal(response.status, 201, `first registration of ${node}`);
  assert.deepEqual(names, ["README.md", "ca.crt", "nebula.yml", "node.crt"]);
  enrolled.ip = response.json.ip;
  enrolled.fingerprint = response.json.certificate.fingerprint;
  return enrolled;
}

function startNebula(underlay: Underlay, enrolled: Enrolled): void {
  // nebula resolves the relative pki paths in nebula.yml against its cwd.
  enrolled.daemon = underlay.spawn(
    enrolled.node,
    ["nebula", "-config", "nebula.yml"],
    enrolled.dir,
  );
}

async function connectWithin(
  underlay: Underlay,
  from: string,
  host: string,
  totalMs: number,
): Promise<string> {
  const deadline = Date.now() + totalMs;
  let last = "";
  while (Date.now() < deadline) {
    last = await tryTcpConnect(underlay, from, host, TCP_PORT, 2000);
    if (last === "connected pong") return last;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return last;
}

/** Returns the first successful result within `windowMs`, else the last failure. */
async function connectDuring(
  underlay: Underlay,
  from: string,
  host: string,
  windowMs: number,
): Promise<string> {
  const deadline = Date.now() + windowMs;
  let last = "";
  while (Date.now() < deadline) {
    last = await tryTcpConnect(underlay, from, host, TCP_PORT, 2000);
    if (last === "connected pong") return last;
  }
  return last;
}

function daemonLogs(nodes: Enrolled[]): string {
  return nodes
    .map((n) => `--- ${n.node}\n${n.daemon?.output().slice(-3000) ?? ""}`)
    .join("\n");
}

Deno.test({
  name: "peer rejects released device after re-registering",
  ignore: !canCreateNamespaces() || stackUnavailable() !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using database = await createTestDatabase();
    await using stack = await startLocalStack(database.url);
    const work = await Deno.makeTempDir({ prefix: "vsm-mesh-" });
    const underlay = await createUnderlay(["lighthouse", "a", "b"]);
    const namespaces = [...underlay.nodes.values()].map((n) => n.netns);
    const nodes: Enrolled[] = [];
    try {
      const owner = await createDevUser(
        stack,
        `owner-${crypto.randomUUID()}@example.test`,
      );
      const endpoint = `${
        underlay.node("lighthouse").underlayIp
      }:${NEBULA_PORT}`;
      const projectId = await createProject(stack, owner.access_token, CIDR, [
        { ip: LIGHTHOUSE_IP, endpoints: [endpoint], name: "lighthouse" },
      ]);

      const token = owner.access_token;
      const lighthouse = await enroll(
        stack,
        token,
        projectId,
        work,
        "lighthouse",
        true,
      );
      const a = await enroll(stack, token, projectId, work, "a", false);
      const b = await enroll(stack, token, projectId, work, "b", false);
      nodes.push(lighthouse, a, b);

      assert.equal(lighthouse.ip, LIGHTHOUSE_IP);
      assert.equal(new Set(nodes.map((n) => n.ip)).size, 3);

      for (const node of nodes) startNebula(underlay, node);
      await startTcpListener(underlay, "b", TCP_PORT);
      await startTcpListener(underlay, "lighthouse", TCP_PORT);

      const before = await connectWithin(underlay, "a", b.ip, REACH_TIMEOUT_MS);

      assert.equal(before, "connected pong", daemonLogs(nodes));

      const release = await api(
        stack,
        "POST",
        `nebula-release/${b.deviceId}?projectId=${projectId}`,
        { token },
      );
      expectStatus(release, 200);
      assert.ok(release.json.revokedFingerprints.includes(b.fingerprint));

      const again = await register(stack, token, projectId, a, false);
      assert.equal(again.response.status, 200, "second registration of a");
      assert.equal(again.response.json.ip, a.ip);
      const config = parse(await Deno.readTextFile(`${a.dir}/nebula.yml`));
      assert.ok(
        config.pki.blocklist.includes(b.fingerprint),
        `blocklist ${
          JSON.stringify(config.pki.blocklist)
        } lacks ${b.fingerprint}`,
      );

      await a.daemon!.stop();
      startNebula(underlay, a);
      const toLighthouse = await connectWithin(
        underlay,
        "a",
        LIGHTHOUSE_IP,
        REACH_TIMEOUT_MS,
      );
      const toReleased = await connectDuring(
        underlay,
        "a",
        b.ip,
        BLOCKED_WINDOW_MS,
      );

      console.log(
        `a -> b before release: ${before}; after: a -> lighthouse ${toLighthouse}, a -> b ${toReleased}`,
      );
      assert.equal(toLighthouse, "connected pong", daemonLogs(nodes));
      assert.notEqual(toReleased, "connected pong", daemonLogs(nodes));
    } finally {
      await underlay.destroy();
      await Deno.remove(work, { recursive: true });
    }
    const left = await listNamespaces();
    for (const name of namespaces) {
      assert.ok(!left.includes(name), `${name} left`);
    }
  },
});

Deno.test({
  name: "devices meet through a lighthouse on port 5000",
  ignore: !canCreateNamespaces() || stackUnavailable() !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // Any port but Nebula's usual 4242, so a lighthouse that ignores its
    // endpoint's port is unreachable and the devices never find each other.
    const lighthousePort = 5000;
    await using database = await createTestDatabase();
    await using stack = await startLocalStack(database.url);
    const work = await Deno.makeTempDir({ prefix: "vsm-mesh-" });
    const underlay = await createUnderlay(["lighthouse", "a", "b"]);
    const namespaces = [...underlay.nodes.values()].map((n) => n.netns);
    const nodes: Enrolled[] = [];
    try {
      const owner = await createDevUser(
        stack,
        `owner-${crypto.randomUUID()}@example.test`,
      );
      const endpoint = `${
        underlay.node("lighthouse").underlayIp
      }:${lighthousePort}`;
      const token = owner.access_token;
      const projectId = await createProject(stack, token, CIDR, [
        { ip: LIGHTHOUSE_IP, endpoints: [endpoint], name: "lighthouse" },
      ]);

      const lighthouse = await enroll(
        stack,
        token,
        projectId,
        work,
        "lighthouse",
        true,
      );
      const a = await enroll(stack, token, projectId, work, "a", false);
      const b = await enroll(stack, token, projectId, work, "b", false);
      nodes.push(lighthouse, a, b);
      const lighthouseConfig = parse(
        await Deno.readTextFile(`${lighthouse.dir}/nebula.yml`),
      );
      const deviceConfig = parse(
        await Deno.readTextFile(`${a.dir}/nebula.yml`),
      );
      const readme = await Deno.readTextFile(`${lighthouse.dir}/README.md`);

      assert.equal(lighthouseConfig.listen.port, lighthousePort);
      assert.deepEqual(deviceConfig.static_host_map[LIGHTHOUSE_IP], [endpoint]);
      assert.equal(deviceConfig.listen.port, 0);
      assert.match(readme, /listens on UDP port 5000/);

      for (const node of nodes) startNebula(underlay, node);
      await startTcpListener(underlay, "b", TCP_PORT);
      const aToB = await connectWithin(underlay, "a", b.ip, REACH_TIMEOUT_MS);

      assert.equal(aToB, "connected pong", daemonLogs(nodes));
    } finally {
      await underlay.destroy();
      await Deno.remove(work, { recursive: true });
    }
    const left = await listNamespaces();
    for (const name of namespaces) {
      assert.ok(!left.includes(name), `${name} left`);
    }
  },
});
