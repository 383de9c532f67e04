import assert from "node:assert/strict";
import JSZip from "jszip";
import { buildBundle, bundleReadme } from "../../shared/bundle/mod.ts";
import { createCa, signHostCertificate } from "../../shared/pki/ca.ts";
import { decodeBase64, encodeBase64 } from "../../shared/pki/base64.ts";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
import { encodePem } from "../../shared/pki/pem.ts";

const START = new Date("2030-03-01T00:00:00Z");
const DAY_SECONDS = 86_400;

async function projectCa(name: string) {
  return await createCa({
    name,
    cidr: "10.1.0.0/24",
    now: START,
    lifetimeSeconds: 30 * DAY_SECONDS,
  });
}

async function bundleInput() {
  const ca = await projectCa("bundle CA");
  const keys = await generateX25519KeyPair();
  const host = await signHostCertificate({
    ca,
    caPrivateKey: ca.privateKey,
    publicKey: keys.publicKey,
    name: "edit-bay",
    ip: "10.1.0.5",
    prefixLength: 24,
    groups: ["project:feature-film"],
    now: START,
    lifetimeSeconds: DAY_SECONDS,
  });
  return {
    ca,
    input: {
      caPem: ca.pem,
      certificatePem: host.pem,
      configYaml: "pki: {}\n",
      readme: bundleReadme({
        projectName: "Feature film",
        deviceName: "edit-bay",
        ip: "10.1.0.5",
        prefixLength: 24,
        notAfter: host.notAfter,
        isLighthouse: false,
        listenPort: 0,
      }),
      now: START,
    },
  };
}

Deno.test("buildBundle() sets UNIX modes zipinfo shows", async () => {
  const { input } = await bundleInput();
  const dir = await Deno.makeTempDir({ prefix: "vidsync-bundle-" });
  try {
    await Deno.writeFile(`${dir}/bundle.zip`, await buildBundle(input));
    const output = await new Deno.Command("zipinfo", {
      args: [`${dir}/bundle.zip`],
      stdout: "piped",
    }).output();
    const lines = new TextDecoder().decode(output.stdout).split("\n")
      .filter((line) => /^[-d]/.test(line));

    assert.ok(output.success);
    assert.equal(lines.length, 4);
    for (const line of lines) {
      assert.match(line, /^-rw-r--r--\s+\S+\s+unx\s/, line);
    }
    assert.deepEqual(
      lines.map((line) => line.split(/\s+/).at(-1)),
      ["ca.crt", "node.crt", "nebula.yml", "README.md"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildBundle() is stable and ordered", async () => {
  const { input } = await bundleInput();

  const first = await buildBundle(input);
  const second = await buildBundle(input);
  const zip = await JSZip.loadAsync(first);

  assert.deepEqual(first, second);
  assert.deepEqual(Object.keys(zip.files), [
    "ca.crt",
    "node.crt",
    "nebula.yml",
    "README.md",
  ]);
  assert.equal(await zip.file("ca.crt")!.async("string"), input.caPem);
  assert.equal(await zip.file("nebula.yml")!.async("string"), input.configYaml);
});

Deno.test("buildBundle() ships several CAs for rotation", async () => {
  const { input } = await bundleInput();
  const next = await projectCa("next CA");

  const zip = await JSZip.loadAsync(
    await buildBundle({ ...input, caPem: input.caPem + next.pem }),
  );

  assert.equal(
    await zip.file("ca.crt")!.async("string"),
    input.caPem + next.pem,
  );
});

Deno.test("buildBundle() rejects a V2 block in ca.crt", async () => {
  const { input } = await bundleInput();
  const v2Block = encodePem("NEBULA CERTIFICATE V2", new Uint8Array([0x30, 0]));

  await assert.rejects(
    buildBundle({ ...input, caPem: input.caPem + v2Block }),
    /NEBULA CERTIFICATE V2/,
  );
});

Deno.test("buildBundle() rejects an expired CA", async () => {
  const { input, ca } = await bundleInput();
  const later = new Date(ca.notAfter.getTime() + 1000);

  await assert.rejects(
    buildBundle({ ...input, now: later }),
    /not valid at/,
  );
});

Deno.test("buildBundle() rejects node.crt from another CA", async () => {
  const { input } = await bundleInput();
  const other = await projectCa("other CA");

  await assert.rejects(
    buildBundle({ ...input, caPem: other.pem }),
    /not in ca\.crt/,
  );
  await assert.rejects(
    buildBundle({ ...input, certificatePem: other.pem }),
    /not a CA|host certificate/,
  );
});

Deno.test("encodeBase64() round-trips a 300 KB bundle", async () => {
  const { input } = await bundleInput();
  // Base64 text of random bytes deflates to about 3/4 of its size.
  const noise = new Uint8Array(320_000);
  for (let offset = 0; offset < noise.length; offset += 65_536) {
    crypto.getRandomValues(noise.subarray(offset, offset + 65_536));
  }
  const big = await buildBundle({ ...input, readme: encodeBase64(noise) });
  const random = new Uint8Array(300 * 1024);
  for (let offset = 0; offset < random.length; offset += 65_536) {
    crypto.getRandomValues(random.subarray(offset, offset + 65_536));
  }

  assert.ok(big.length > 300_000, `bundle is ${big.length} bytes`);
  assert.deepEqual(decodeBase64(encodeBase64(big)), big);
  assert.deepEqual(decodeBase64(encodeBase64(random)), random);
});
