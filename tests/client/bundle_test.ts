import assert from "node:assert/strict";
import { parse } from "yaml";
import {
  checkBundle,
  pointConfigAt,
  unzipBundle,
} from "../../client/src/bundle.ts";
import {
  ConfigFileError,
  KeyPairMismatchError,
} from "../../client/src/errors.ts";
import { generateKeyPair, type KeyPair } from "../../client/src/keys.ts";
import { writeConfiguration } from "../../client/src/store.ts";
import {
  makeCa,
  nebulaTest,
  sampleConfig,
  signHost,
  zipBundle,
} from "./support.ts";

interface Fixture {
  dir: string;
  keyPair: KeyPair;
  caPem: string;
  certPem: string;
}

async function fixture(): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "mesh-bundle-" });
  await makeCa(dir);
  const keyPair = await generateKeyPair();
  await Deno.writeTextFile(`${dir}/host.pub`, keyPair.publicKeyPem);
  const certPem = await signHost(
    dir,
    "host",
    "10.77.0.9/24",
    `${dir}/host.pub`,
  );

  return {
    dir,
    keyPair,
    caPem: await Deno.readTextFile(`${dir}/ca.crt`),
    certPem,
  };
}

function files(f: Fixture) {
  return {
    caPem: f.caPem,
    certPem: f.certPem,
    nebulaYml: sampleConfig(),
    readme: "",
  };
}

Deno.test("checkBundle() accepts a certificate issued for the device key", async () => {
  const f = await fixture();

  const checked = await checkBundle(files(f), f.keyPair.publicKey);

  assert.equal(checked.certificate.ip, "10.77.0.9/24");
  assert.equal(checked.cas.length, 1);
  assert.equal(checked.certificate.issuer, checked.cas[0].fingerprint);
  await Deno.remove(f.dir, { recursive: true });
});

Deno.test("checkBundle() names node.crt when it carries another key", async () => {
  const f = await fixture();
  const other = await generateKeyPair();

  const error = await checkBundle(files(f), other.publicKey).catch((e) => e);

  assert.ok(error instanceof KeyPairMismatchError);
  assert.equal(error.file, "node.crt");
  assert.equal(error.code, "key_pair_mismatch");
  await Deno.remove(f.dir, { recursive: true });
});

Deno.test("checkBundle() names the key file when blamed on the key", async () => {
  const f = await fixture();
  const other = await generateKeyPair();

  const error = await checkBundle(
    files(f),
    other.publicKey,
    "key",
    "/x/node.key",
  )
    .catch((e) => e);

  assert.ok(error instanceof KeyPairMismatchError);
  assert.equal(error.file, "/x/node.key");
  assert.match(error.message, /not the private key of node\.crt/);
  await Deno.remove(f.dir, { recursive: true });
});

Deno.test("checkBundle() rejects a certificate of a CA missing from ca.crt", async () => {
  const f = await fixture();
  const otherDir = await Deno.makeTempDir({ prefix: "mesh-bundle-" });
  await makeCa(otherDir, "other CA");

  const error = await checkBundle(
    { ...files(f), caPem: await Deno.readTextFile(`${otherDir}/ca.crt`) },
    f.keyPair.publicKey,
  ).catch((e) => e);

  assert.ok(error instanceof ConfigFileError);
  assert.equal(error.file, "node.crt");
  assert.match(error.message, /not in ca\.crt/);
  await Deno.remove(f.dir, { recursive: true });
  await Deno.remove(otherDir, { recursive: true });
});

Deno.test("checkBundle() names ca.crt and nebula.yml when they are broken", async () => {
  const f = await fixture();

  const noCa = await checkBundle(
    { ...files(f), caPem: "" },
    f.keyPair.publicKey,
  )
    .catch((e) => e);
  const badYaml = await checkBundle(
    { ...files(f), nebulaYml: "pki: [unclosed" },
    f.keyPair.publicKey,
  ).catch((e) => e);

  assert.equal(noCa.file, "ca.crt");
  assert.equal(badYaml.file, "nebula.yml");
  await Deno.remove(f.dir, { recursive: true });
});

Deno.test("unzipBundle() names a missing entry and a corrupt archive", async () => {
  const partial = await zipBundle({ "ca.crt": "x", "nebula.yml": "pki: {}" });

  const missing = await unzipBundle(partial).catch((e) => e);
  const corrupt = await unzipBundle(new TextEncoder().encode("PK not a zip"))
    .catch((e) => e);

  assert.ok(missing instanceof ConfigFileError);
  assert.equal(missing.file, "node.crt");
  assert.ok(corrupt instanceof ConfigFileError);
  assert.equal(corrupt.code, "invalid_bundle");
});

Deno.test("pointConfigAt() makes pki paths absolute and keeps inline PEM", () => {
  const inline = sampleConfig().replace(
    "ca: ca.crt",
    'ca: "-----BEGIN NEBULA CERTIFICATE-----\\nAA==\\n"',
  );

  const relative = parse(
    pointConfigAt(sampleConfig(), "/home/u/.vidsync/nebula/p"),
  );
  const kept = parse(pointConfigAt(inline, "/d"));

  assert.equal(relative.pki.ca, "/home/u/.vidsync/nebula/p/ca.crt");
  assert.equal(relative.pki.cert, "/home/u/.vidsync/nebula/p/node.crt");
  assert.equal(relative.pki.key, "/home/u/.vidsync/nebula/p/node.key");
  assert.match(kept.pki.ca, /^-----BEGIN NEBULA CERTIFICATE-----/);
  assert.equal(kept.pki.key, "/d/node.key");
});

Deno.test("installed files pass nebula -test from another directory", async () => {
  const f = await fixture();
  const target = `${f.dir}/installed/project`;
  await writeConfiguration(target, {
    "ca.crt": { content: f.caPem, mode: 0o644 },
    "node.crt": { content: f.certPem, mode: 0o644 },
    "node.key": { content: f.keyPair.privateKeyPem, mode: 0o600 },
    "nebula.yml": {
      content: pointConfigAt(sampleConfig(), target),
      mode: 0o644,
    },
  });

  const result = await nebulaTest(`${target}/nebula.yml`);

  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal((await Deno.stat(`${target}/node.key`)).mode! & 0o777, 0o600);
  await Deno.remove(f.dir, { recursive: true });
});

Deno.test("nebula -test rejects a key that is not the certificate's", async () => {
  const f = await fixture();
  const other = await generateKeyPair();
  const target = `${f.dir}/installed/project`;
  await writeConfiguration(target, {
    "ca.crt": { content: f.caPem, mode: 0o644 },
    "node.crt": { content: f.certPem, mode: 0o644 },
    "node.key": { content: other.privateKeyPem, mode: 0o600 },
    "nebula.yml": {
      content: pointConfigAt(sampleConfig(), target),
      mode: 0o644,
    },
  });

  const result = await nebulaTest(`${target}/nebula.yml`);
  const checked = await checkBundle(files(f), other.publicKey).catch((e) => e);

  // Nebula and the client agree that this pair is wrong.
  assert.notEqual(result.code, 0);
  assert.ok(checked instanceof KeyPairMismatchError);
  await Deno.remove(f.dir, { recursive: true });
});
