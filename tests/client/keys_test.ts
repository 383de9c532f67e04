import assert from "node:assert/strict";
import {
  derivePublicKey,
  generateKeyPair,
  keyPairFromPrivatePem,
} from "../../client/src/keys.ts";
import { decodePemBlocks } from "../../client/src/pem.ts";
import { parseCertificate } from "../../client/src/cert.ts";
import { makeCa, nebulaCert, signHost } from "./support.ts";

/** Replaces every base64 character, so two PEMs compare by form only. */
function shape(pem: string): string {
  return pem.replace(/[A-Za-z0-9+/]/g, "x");
}

Deno.test("generateKeyPair() writes PEM in nebula-cert keygen's form", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mesh-keys-" });
  await nebulaCert([
    "keygen",
    "-out-key",
    `${dir}/ref.key`,
    "-out-pub",
    `${dir}/ref.pub`,
  ]);
  const ours = await generateKeyPair();

  assert.equal(
    shape(ours.privateKeyPem),
    shape(await Deno.readTextFile(`${dir}/ref.key`)),
  );
  assert.equal(
    shape(ours.publicKeyPem),
    shape(await Deno.readTextFile(`${dir}/ref.pub`)),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("derivePublicKey() matches nebula-cert keygen's public key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mesh-keys-" });
  for (let i = 0; i < 5; i++) {
    await nebulaCert([
      "keygen",
      "-out-key",
      `${dir}/k${i}.key`,
      "-out-pub",
      `${dir}/k${i}.pub`,
    ]);
    const pair = await keyPairFromPrivatePem(
      await Deno.readTextFile(`${dir}/k${i}.key`),
    );

    assert.ok(pair);
    assert.equal(
      pair.publicKeyPem,
      await Deno.readTextFile(`${dir}/k${i}.pub`),
    );
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("nebula-cert signs the generated public key unchanged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mesh-keys-" });
  await makeCa(dir);
  const ours = await generateKeyPair();
  await Deno.writeTextFile(`${dir}/host.pub`, ours.publicKeyPem);

  const certificate = await parseCertificate(
    await signHost(dir, "host", "10.77.0.9/24", `${dir}/host.pub`),
  );

  assert.deepEqual(certificate.publicKey, ours.publicKey);
  assert.equal(certificate.ip, "10.77.0.9/24");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("keyPairFromPrivatePem() accepts CRLF and rejects other key types", async () => {
  const ours = await generateKeyPair();
  const crlf = ours.privateKeyPem.replaceAll("\n", "\r\n");

  const pair = await keyPairFromPrivatePem(crlf);
  const wrongType = ours.privateKeyPem.replaceAll("X25519", "ED25519");

  assert.deepEqual(pair?.publicKey, ours.publicKey);
  assert.equal(await keyPairFromPrivatePem(wrongType), null);
  assert.equal(await keyPairFromPrivatePem("not a key"), null);
});

Deno.test("derivePublicKey() rejects keys that are not 32 bytes", async () => {
  await assert.rejects(() => derivePublicKey(new Uint8Array(31)), RangeError);
});

Deno.test("private key PEM holds 32 bytes and the public key 32 bytes", async () => {
  const ours = await generateKeyPair();

  const [privateBlock] = decodePemBlocks(ours.privateKeyPem);
  const [publicBlock] = decodePemBlocks(ours.publicKeyPem);

  assert.equal(privateBlock.type, "NEBULA X25519 PRIVATE KEY");
  assert.equal(privateBlock.bytes.length, 32);
  assert.equal(publicBlock.type, "NEBULA X25519 PUBLIC KEY");
  assert.equal(publicBlock.bytes.length, 32);
});
