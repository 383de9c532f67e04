import assert from "node:assert/strict";
import { parse } from "yaml";
import { createCa, signHostCertificate } from "../../shared/pki/ca.ts";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
import {
  ConfigInputError,
  generateNebulaConfig,
  type NebulaConfigInput,
} from "../../shared/config/nebula_yml.ts";

const HOSTILE_NAMES = [
  "plain-laptop",
  "name: injected\npki:\n  ca: /etc/shadow",
  "quote\" and 'single' and `back`",
  "# comment start",
  "{flow: mapping}",
  "- list item",
  "Montage-Studio-Zürich-编辑-🎬",
  "&anchor *alias !tag",
  "x".repeat(200),
];

async function runNebulaTest(
  input: NebulaConfigInput,
  name: string,
  extraCaPem = "",
  keyPem?: string,
) {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-config-" });
  try {
    const now = new Date();
    const ca = await createCa({
      name: "config test",
      cidr: "10.60.0.0/24",
      notBefore: now,
      notAfter: new Date(now.getTime() + 86_400_000),
    });
    const keys = await generateX25519KeyPair();
    const certificate = await signHostCertificate({
      ca,
      caPrivateKey: ca.privateKey,
      publicKey: keys.publicKey,
      name,
      ip: input.device.ip,
      prefixLength: input.device.prefixLength,
      groups: [input.projectGroup],
      notBefore: now,
      notAfter: new Date(now.getTime() + 3_600_000),
    });
    await Deno.writeTextFile(`${dir}/ca.crt`, ca.pem + extraCaPem);
    await Deno.writeTextFile(`${dir}/node.crt`, certificate.pem);
    await Deno.writeTextFile(`${dir}/node.key`, keyPem ?? keys.privatePem);
    const config = generateNebulaConfig({
      ...input,
      pki: {
        ca: `${dir}/ca.crt`,
        cert: `${dir}/node.crt`,
        key: `${dir}/node.key`,
      },
    });
    await Deno.writeTextFile(`${dir}/nebula.yml`, config);
    const output = await new Deno.Command("nebula", {
      args: ["-test", "-config", `${dir}/nebula.yml`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      success: output.success,
      output: new TextDecoder().decode(output.stdout) +
        new TextDecoder().decode(output.stderr),
      config,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// IP literals only: nebula -test resolves host names, and tests must not
// send DNS queries off this machine.
const LIGHTHOUSES = [
  { ip: "10.60.0.1", endpoints: ["198.51.100.7:4242", "198.51.100.9:4242"] },
  { ip: "10.60.0.2", endpoints: ["198.51.100.8:4243"] },
];

Deno.test("generateNebulaConfig() passes nebula -test for devices", async () => {
  for (const name of HOSTILE_NAMES) {
    const result = await runNebulaTest({
      device: { ip: "10.60.0.20", prefixLength: 24, isLighthouse: false },
      lighthouses: LIGHTHOUSES,
      projectGroup: "vidsync-project",
      blocklist: ["ab".repeat(32)],
    }, name);

    assert.ok(result.success, `${JSON.stringify(name)}: ${result.output}`);
  }
});

Deno.test("generateNebulaConfig() makes a lighthouse list no hosts", async () => {
  const result = await runNebulaTest({
    device: { ip: "10.60.0.1", prefixLength: 24, isLighthouse: true },
    lighthouses: LIGHTHOUSES,
    projectGroup: "vidsync-project",
    blocklist: [],
  }, "lighthouse");
  const config = parse(result.config);

  assert.ok(result.success, result.output);
  assert.equal(config.lighthouse.am_lighthouse, true);
  assert.deepEqual(config.lighthouse.hosts, []);
  assert.equal(config.listen.port, 4242);
  assert.equal(
    config.static_host_map["10.60.0.1"],
    undefined,
    "no entry for itself",
  );
});

Deno.test("generateNebulaConfig() listens on the lighthouse's endpoint port", async () => {
  const lighthouses = [
    { ip: "10.60.0.1", endpoints: ["203.0.113.9:5000"] },
    { ip: "10.60.0.2", endpoints: ["198.51.100.8:4243"] },
  ];
  const lighthouse = await runNebulaTest({
    device: { ip: "10.60.0.1", prefixLength: 24, isLighthouse: true },
    lighthouses,
    projectGroup: "vidsync-project",
    blocklist: [],
  }, "lighthouse-5000");
  const device = await runNebulaTest({
    device: { ip: "10.60.0.40", prefixLength: 24, isLighthouse: false },
    lighthouses,
    projectGroup: "vidsync-project",
    blocklist: [],
  }, "device");
  const lighthouseConfig = parse(lighthouse.config);
  const deviceConfig = parse(device.config);

  assert.ok(lighthouse.success, lighthouse.output);
  assert.ok(device.success, device.output);
  assert.equal(lighthouseConfig.listen.port, 5000);
  assert.deepEqual(deviceConfig.static_host_map["10.60.0.1"], [
    "203.0.113.9:5000",
  ]);
  assert.equal(deviceConfig.listen.port, 0, "devices take a random port");
});

Deno.test("generateNebulaConfig() listens on [::] for IPv6 endpoints", async () => {
  const lighthouses = [
    { ip: "10.60.0.1", endpoints: ["[fd00:b2::1]:4343", "192.0.2.1:4343"] },
    { ip: "10.60.0.2", endpoints: ["198.51.100.8:4343"] },
  ];
  const lighthouse = await runNebulaTest({
    device: { ip: "10.60.0.1", prefixLength: 24, isLighthouse: true },
    lighthouses,
    projectGroup: "vidsync-project",
    blocklist: [],
  }, "lighthouse-ipv6");
  const device = await runNebulaTest({
    device: { ip: "10.60.0.40", prefixLength: 24, isLighthouse: false },
    lighthouses,
    projectGroup: "vidsync-project",
    blocklist: [],
  }, "device");
  const lighthouseConfig = parse(lighthouse.config);
  const deviceConfig = parse(device.config);

  assert.ok(lighthouse.success, lighthouse.output);
  assert.ok(device.success, device.output);
  assert.equal(lighthouseConfig.listen.host, "[::]");
  assert.equal(lighthouseConfig.listen.port, 4343);
  assert.match(lighthouse.config, /^ {2}host: "\[::\]"$/m);
  assert.equal(deviceConfig.listen.host, "[::]", "devices dial IPv6 too");
  assert.equal(deviceConfig.listen.port, 0);
  assert.deepEqual(deviceConfig.static_host_map["10.60.0.1"], [
    "[fd00:b2::1]:4343",
    "192.0.2.1:4343",
  ]);
});

Deno.test("generateNebulaConfig() listens on 0.0.0.0 without IPv6 endpoints", async () => {
  const lighthouses = [
    { ip: "10.60.0.1", endpoints: ["192.0.2.1:4343"] },
    { ip: "10.60.0.2", endpoints: ["198.51.100.8:4343"] },
  ];
  const lighthouse = await runNebulaTest({
    device: { ip: "10.60.0.1", prefixLength: 24, isLighthouse: true },
    lighthouses,
    projectGroup: "vidsync-project",
    blocklist: [],
  }, "lighthouse-ipv4");
  const device = await runNebulaTest({
    device: { ip: "10.60.0.40", prefixLength: 24, isLighthouse: false },
    lighthouses,
    projectGroup: "vidsync-project",
    blocklist: [],
  }, "device");
  const lighthouseConfig = parse(lighthouse.config);
  const deviceConfig = parse(device.config);

  assert.ok(lighthouse.success, lighthouse.output);
  assert.ok(device.success, device.output);
  assert.equal(lighthouseConfig.listen.host, "0.0.0.0");
  assert.equal(lighthouseConfig.listen.port, 4343);
  assert.equal(deviceConfig.listen.host, "0.0.0.0");
});

Deno.test("generateNebulaConfig() sets 4 MiB UDP buffers", async () => {
  const result = await runNebulaTest({
    device: { ip: "10.60.0.40", prefixLength: 24, isLighthouse: false },
    lighthouses: [{ ip: "10.60.0.1", endpoints: ["203.0.113.9:4242"] }],
    projectGroup: "vidsync-project",
    blocklist: [],
  }, "buffers");
  const config = parse(result.config);

  assert.ok(result.success, result.output);
  assert.equal(config.listen.read_buffer, 4 * 1024 * 1024);
  assert.equal(config.listen.write_buffer, 4 * 1024 * 1024);
});

Deno.test("generateNebulaConfig() maps every listed lighthouse", () => {
  const config = parse(generateNebulaConfig({
    device: { ip: "10.60.0.30", prefixLength: 24, isLighthouse: false },
    lighthouses: LIGHTHOUSES,
    projectGroup: "vidsync-project",
    blocklist: [],
  }));

  assert.deepEqual(config.lighthouse.hosts, ["10.60.0.1", "10.60.0.2"]);
  for (const host of config.lighthouse.hosts) {
    assert.ok(config.static_host_map[host]?.length > 0, host);
  }
  assert.equal(config.pki.disconnect_invalid, true);
  assert.equal(config.listen.port, 0);
  for (const rule of config.firewall.inbound) {
    assert.equal(
      typeof rule.group,
      "string",
      "one group form: a string, never a list",
    );
    assert.equal(rule.groups, undefined);
  }
});

Deno.test("generateNebulaConfig() rejects what nebula -test misses", () => {
  const base: NebulaConfigInput = {
    device: { ip: "10.60.0.30", prefixLength: 24, isLighthouse: false },
    lighthouses: LIGHTHOUSES,
    projectGroup: "vidsync-project",
    blocklist: [],
  };
  const bad: [string, NebulaConfigInput][] = [
    ["lighthouse outside network", {
      ...base,
      lighthouses: [{ ip: "10.60.1.1", endpoints: ["198.51.100.7:4242"] }],
    }],
    ["lighthouse without endpoint", {
      ...base,
      lighthouses: [{ ip: "10.60.0.1", endpoints: [] }],
    }],
    ["endpoint without port", {
      ...base,
      lighthouses: [{ ip: "10.60.0.1", endpoints: ["198.51.100.7"] }],
    }],
    ["endpoint port 0", {
      ...base,
      lighthouses: [{ ip: "10.60.0.1", endpoints: ["198.51.100.7:0"] }],
    }],
    ["endpoint port 65536", {
      ...base,
      lighthouses: [{ ip: "10.60.0.1", endpoints: ["198.51.100.7:65536"] }],
    }],
    ["uppercase fingerprint", { ...base, blocklist: ["AB".repeat(32)] }],
    ["short fingerprint", { ...base, blocklist: ["ab".repeat(16)] }],
    ["lighthouse listed twice", {
      ...base,
      lighthouses: [LIGHTHOUSES[0], LIGHTHOUSES[0]],
    }],
    ["lighthouse address not IPv4", {
      ...base,
      lighthouses: [{ ip: "10.60.0.256", endpoints: ["198.51.100.7:4242"] }],
    }],
    ["endpoint host with space", {
      ...base,
      lighthouses: [{ ip: "10.60.0.1", endpoints: ["bad host:4242"] }],
    }],
    ["device prefix /31", {
      ...base,
      device: { ...base.device, prefixLength: 31 },
    }],
    ["empty project group", { ...base, projectGroup: " " }],
    ["own lighthouse endpoints on two ports", {
      ...base,
      device: { ...base.device, ip: "10.60.0.1", isLighthouse: true },
      lighthouses: [{
        ip: "10.60.0.1",
        endpoints: ["198.51.100.7:4242", "198.51.100.9:5000"],
      }],
    }],
    ["lighthouse device not in lighthouses", {
      ...base,
      device: { ...base.device, ip: "10.60.0.9", isLighthouse: true },
    }],
  ];

  for (const [label, input] of bad) {
    assert.throws(() => generateNebulaConfig(input), ConfigInputError, label);
  }
});

Deno.test("generateNebulaConfig() keeps hostile group text as data", async () => {
  const groups = [
    "project:0b6f3c1e-5a7d-4c2b-9e8f-1a2b3c4d5e6f",
    "x: y\nfirewall: {}",
    "'; inbound: [any]",
    "編集チーム 🎬",
  ];
  for (const group of groups) {
    const input: NebulaConfigInput = {
      device: { ip: "10.60.0.21", prefixLength: 24, isLighthouse: false },
      lighthouses: LIGHTHOUSES,
      projectGroup: group,
      blocklist: [],
    };

    const result = await runNebulaTest(input, "group-test");
    const config = parse(result.config);

    assert.ok(result.success, `${JSON.stringify(group)}: ${result.output}`);
    assert.deepEqual(
      config.firewall.inbound.map((rule: { group: string }) => rule.group),
      [group, group, group],
    );
    assert.deepEqual(Object.keys(config).sort(), [
      "firewall",
      "lighthouse",
      "listen",
      "logging",
      "pki",
      "punchy",
      "relay",
      "static_host_map",
      "tun",
    ]);
  }
});

Deno.test("generateNebulaConfig() works with a two-CA bundle", async () => {
  const now = new Date();
  const next = await createCa({
    name: "next CA",
    cidr: "10.60.0.0/24",
    now,
    lifetimeSeconds: 30 * 86_400,
  });

  const result = await runNebulaTest(
    {
      device: { ip: "10.60.0.22", prefixLength: 24, isLighthouse: false },
      lighthouses: LIGHTHOUSES,
      projectGroup: "vidsync-project",
      blocklist: [],
    },
    "rotation",
    next.pem,
  );

  assert.ok(result.success, result.output);
});

Deno.test("nebula -test rejects a key that does not match node.crt", async () => {
  const stranger = await generateX25519KeyPair();

  const result = await runNebulaTest(
    {
      device: { ip: "10.60.0.23", prefixLength: 24, isLighthouse: false },
      lighthouses: LIGHTHOUSES,
      projectGroup: "vidsync-project",
      blocklist: [],
    },
    "wrong key",
    "",
    stranger.privatePem,
  );

  assert.equal(result.success, false);
  assert.match(result.output, /not a pair/);
});
