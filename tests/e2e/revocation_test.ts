/**
 * Revocation end to end: real `nebula` daemons in network namespaces run
 * bundles from the local stack. After an admin revokes device B through
 * `nebula-revoke`, device A fetches its new nebula.yml through
 * `nebula-config` (the old ETag no longer matches), restarts with it, and
 * then rejects B while it still reaches the lighthouse. B keeps its address,
 * because a revoke does not release it.
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
  type LocalStack,
  nebulaKeygen,
  stackUnavailable,
  startLocalStack,
  unpackBundle,
} from "./stack.ts";

const CIDR = "10.78.0.0/24";
const LIGHTHOUSE_IP = "10.78.0.1";
const NEBULA_PORT = 4242;
// The generated firewall admits inbound TCP only on Syncthing's port.
const TCP_PORT = 22000;
// Local handshakes finish in milliseconds; the budget covers daemon start.
const REACH_TIMEOUT_MS = 15_000;
// Once A has B on its blocklist, every attempt to reach B must fail this long.
const BLOCKED_WINDOW_MS = 6_000;

interface Device {
  node: string;
  deviceId: string;
  dir: string;
  ip: string;
  fingerprint: string;
  daemon?: Spawned;
}

async function enroll(
  stack: LocalStack,
  token: string,
  projectId: string,
  work: string,
  node: string,
): Promise<Device> {
  const keys = await nebulaKeygen();
  const dir = `${work}/${node}`;
  await Deno.mkdir(dir);
  const deviceId = crypto.randomUUID();

  const response = await api(stack, "POST", "nebula-register", {
    token,
    body: {
      projectId,
      deviceId,
      deviceName: node,
      publicKey: keys.publicKeyPem,
      ...(node === "lighthouse" ? { lighthouse: true } : {}),
    },
  });
  expectStatus(response, 201);
  await unpackBundle(response.json.bundle, dir);
  await Deno.writeTextFile(`${dir}/node.key`, keys.privateKeyPem);

  return {
    node,
    deviceId,
    dir,
    ip: response.json.ip,
    fingerprint: response.json.certificate.fingerprint,
  };
}

function startNebula(underlay: Underlay, device: Device): void {
  // nebula resolves the relative pki paths in nebula.yml against its cwd.
  device.daemon = underlay.spawn(
    device.node,
    ["nebula", "-config", "nebula.yml"],
    device.dir,
  );
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
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return last;
}

function daemonLogs(devices: Device[]): string {
  return devices
    .map((d) => `--- ${d.node}\n${d.daemon?.output().slice(-3000) ?? ""}`)
    .join("\n");
}

function fetchConfig(
  stack: LocalStack,
  token: string,
  projectId: string,
  device: Device,
  etag?: string,
) {
  return api(
    stack,
    "GET",
    `nebula-config/${device.deviceId}?projectId=${projectId}`,
    { token, headers: etag ? { "If-None-Match": etag } : {} },
  );
}

Deno.test({
  name: "peer rejects revoked device after config refresh",
  ignore: !canCreateNamespaces() || stackUnavailable() !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using database = await createTestDatabase();
    await using stack = await startLocalStack(database.url);
    const work = await Deno.makeTempDir({ prefix: "vsm-revoke-" });
    const underlay = await createUnderlay(["lighthouse", "a", "b"]);
    const namespaces = [...underlay.nodes.values()].map((n) => n.netns);
    const devices: Device[] = [];
    try {
      const owner = await createDevUser(
        stack,
        `owner-${crypto.randomUUID()}@example.test`,
      );
      const token = owner.access_token;
      const endpoint = `${
        underlay.node("lighthouse").underlayIp
      }:${NEBULA_PORT}`;
      const projectId = await createProject(stack, token, CIDR, [
        { ip: LIGHTHOUSE_IP, endpoints: [endpoint], name: "lighthouse" },
      ]);
      for (const node of ["lighthouse", "a", "b"]) {
        devices.push(await enroll(stack, token, projectId, work, node));
      }
      const [, a, b] = devices;

      for (const device of devices) startNebula(underlay, device);
      await startTcpListener(underlay, "b", TCP_PORT);
      await startTcpListener(underlay, "lighthouse", TCP_PORT);
      const before = await connectDuring(underlay, "a", b.ip, REACH_TIMEOUT_MS);
      assert.equal(before, "connected pong", daemonLogs(devices));
      const first = expectStatus(
        await fetchConfig(stack, token, projectId, a),
        200,
      );
      const oldEtag = first.headers.get("etag")!;

      const revoke = await api(stack, "POST", "nebula-revoke", {
        token,
        body: { projectId, deviceId: b.deviceId, reason: "device lost" },
      });
      expectStatus(revoke, 200);
      assert.deepEqual(revoke.json.revokedFingerprints, [b.fingerprint]);

      const refreshed = expectStatus(
        await fetchConfig(stack, token, projectId, a, oldEtag),
        200,
      );
      assert.notEqual(refreshed.headers.get("etag"), oldEtag);
      const config = parse(refreshed.text);
      assert.deepEqual(config.pki.blocklist, [b.fingerprint]);
      const again = await fetchConfig(
        stack,
        token,
        projectId,
        a,
        refreshed.headers.get("etag")!,
      );
      assert.equal(again.status, 304);
      await Deno.writeTextFile(`${a.dir}/nebula.yml`, refreshed.text);

      await a.daemon!.stop();
      startNebula(underlay, a);
      const toLighthouse = await connectDuring(
        underlay,
        "a",
        LIGHTHOUSE_IP,
        REACH_TIMEOUT_MS,
      );
      const toRevoked = await connectDuring(
        underlay,
        "a",
        b.ip,
        BLOCKED_WINDOW_MS,
      );

      console.log(
        `a -> b before revoke: ${before}; after: a -> lighthouse ${toLighthouse}, a -> b ${toRevoked}`,
      );
      assert.equal(toLighthouse, "connected pong", daemonLogs(devices));
      assert.notEqual(toRevoked, "connected pong", daemonLogs(devices));
      assert.match(a.daemon!.output(), /block ?list/i);
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
