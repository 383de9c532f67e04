/**
 * The namespace harness on its own, with certificates from `nebula-cert`
 * and no control plane: if this fails, the mesh test cannot pass either.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import {
  canCreateNamespaces,
  createUnderlay,
  listNamespaces,
  startTcpListener,
  tryTcpConnect,
} from "../support/netns.ts";

const NEBULA_PORT = 4242;
const TCP_PORT = 7000;

async function nebulaCert(args: string[], cwd: string): Promise<void> {
  const output = await new Deno.Command("nebula-cert", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `nebula-cert ${args[0]} failed: ${
        new TextDecoder().decode(output.stderr)
      }`,
    );
  }
}

function nodeConfig(
  lighthouseIp: string,
  lighthouseEndpoint: string,
  amLighthouse: boolean,
) {
  return {
    pki: { ca: "ca.crt", cert: "node.crt", key: "node.key" },
    static_host_map: amLighthouse ? {} : {
      [lighthouseIp]: [lighthouseEndpoint],
    },
    lighthouse: {
      am_lighthouse: amLighthouse,
      interval: 60,
      hosts: amLighthouse ? [] : [lighthouseIp],
    },
    listen: { host: "0.0.0.0", port: amLighthouse ? NEBULA_PORT : 0 },
    punchy: { punch: true },
    tun: { dev: "nebula1", mtu: 1300 },
    logging: { level: "info" },
    firewall: {
      outbound: [{ port: "any", proto: "any", host: "any" }],
      inbound: [{ port: "any", proto: "any", host: "any" }],
    },
  };
}

Deno.test({
  name: "underlay carries nebula traffic between namespaces",
  ignore: !canCreateNamespaces(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const work = await Deno.makeTempDir({ prefix: "vsm-underlay-" });
    const underlay = await createUnderlay(["lighthouse", "a", "b"]);
    const names = [...underlay.nodes.values()].map((n) => n.netns);
    try {
      await nebulaCert(
        ["ca", "-name", "underlay test", "-duration", "1h"],
        work,
      );
      const overlay = {
        lighthouse: "10.77.0.1",
        a: "10.77.0.2",
        b: "10.77.0.3",
      };
      const endpoint = `${
        underlay.node("lighthouse").underlayIp
      }:${NEBULA_PORT}`;
      for (const [name, ip] of Object.entries(overlay)) {
        const dir = `${work}/${name}`;
        await Deno.mkdir(dir);
        await Deno.copyFile(`${work}/ca.crt`, `${dir}/ca.crt`);
        await nebulaCert([
          "sign",
          "-ca-crt",
          "../ca.crt",
          "-ca-key",
          "../ca.key",
          "-name",
          name,
          "-ip",
          `${ip}/24`,
          "-out-crt",
          "node.crt",
          "-out-key",
          "node.key",
        ], dir);
        const config = nodeConfig(
          overlay.lighthouse,
          endpoint,
          name === "lighthouse",
        );
        await Deno.writeTextFile(`${dir}/nebula.yml`, stringify(config));
        underlay.spawn(name, ["nebula", "-config", "nebula.yml"], dir);
      }
      await startTcpListener(underlay, "b", TCP_PORT);

      const result = await connectWithin(underlay, overlay.b, 20_000);

      assert.equal(result, "connected pong");
    } finally {
      await underlay.destroy();
      await Deno.remove(work, { recursive: true });
    }
    const left = await listNamespaces();
    for (const name of names) assert.ok(!left.includes(name), `${name} left`);
  },
});

async function connectWithin(
  underlay: Awaited<ReturnType<typeof createUnderlay>>,
  host: string,
  totalMs: number,
): Promise<string> {
  const deadline = Date.now() + totalMs;
  let last = "";
  while (Date.now() < deadline) {
    last = await tryTcpConnect(underlay, "a", host, TCP_PORT, 2000);
    if (last === "connected pong") return last;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return last;
}
