import assert from "node:assert/strict";
import JSZip from "jszip";
import { buildBundle, bundleReadme } from "../../shared/bundle/mod.ts";
import { decodeBase64, encodeBase64 } from "../../shared/pki/base64.ts";

const INPUT = {
  caPem:
    "-----BEGIN NEBULA CERTIFICATE-----\nAA==\n-----END NEBULA CERTIFICATE-----\n",
  certificatePem:
    "-----BEGIN NEBULA CERTIFICATE-----\nAQ==\n-----END NEBULA CERTIFICATE-----\n",
  configYaml: "pki: {}\n",
  readme: bundleReadme({
    projectName: "Feature film",
    deviceName: "edit-bay",
    ip: "10.1.0.5",
    prefixLength: 24,
    notAfter: new Date("2031-01-01T00:00:00Z"),
    isLighthouse: false,
  }),
};

Deno.test("buildBundle() sets UNIX modes zipinfo shows", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-bundle-" });
  try {
    await Deno.writeFile(`${dir}/bundle.zip`, await buildBundle(INPUT));
    const output = await new Deno.Command("zipinfo", {
      args: [`${dir}/bundle.zip`],
      stdout: "piped",
    }).output();
    const lines = new TextDecoder().decode(output.stdout).split("\n").filter((
      line,
    ) => /^-/.test(line));

    assert.ok(output.success);
    assert.equal(lines.length, 4);
    for (const line of lines) {
      assert.match(line, /^-rw-r--r--\s+\S+\s+unx/, line);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildBundle() is stable and ordered", async () => {
  const first = await buildBundle(INPUT);
  const second = await buildBundle(INPUT);
  const zip = await JSZip.loadAsync(first);

  assert.deepEqual(first, second);
  assert.deepEqual(Object.keys(zip.files), [
    "ca.crt",
    "node.crt",
    "nebula.yml",
    "README.md",
  ]);
  assert.equal(await zip.file("nebula.yml")!.async("string"), INPUT.configYaml);
});

Deno.test("encodeBase64() round-trips a 300 KB bundle", async () => {
  const noise = encodeBase64(crypto.getRandomValues(new Uint8Array(60_000)));
  const big = await buildBundle({
    ...INPUT,
    readme: noise.repeat(4) + noise.slice(0, 10_000),
  });
  const random = new Uint8Array(300 * 1024);
  for (let offset = 0; offset < random.length; offset += 65_536) {
    crypto.getRandomValues(random.subarray(offset, offset + 65_536));
  }

  assert.deepEqual(decodeBase64(encodeBase64(big)), big);
  assert.deepEqual(decodeBase64(encodeBase64(random)), random);
});
