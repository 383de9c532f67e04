import assert from "node:assert/strict";
import { InvalidInputError } from "../../shared/errors.ts";
import {
  deriveX25519PublicKey,
  generateX25519KeyPair,
  parseDevicePublicKey,
} from "../../shared/pki/keys.ts";
import { decodePemBlocks } from "../../shared/pki/pem.ts";
import { nebulaCert } from "./oracle.ts";

async function nebulaKeyPair() {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-keys-" });
  try {
    await nebulaCert([
      "keygen",
      "-out-key",
      `${dir}/k.key`,
      "-out-pub",
      `${dir}/k.pub`,
    ]);
    return {
      privatePem: await Deno.readTextFile(`${dir}/k.key`),
      publicPem: await Deno.readTextFile(`${dir}/k.pub`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function rejectsKey(input: unknown, pattern: RegExp, label: string) {
  assert.throws(
    () => parseDevicePublicKey(input),
    (error) =>
      error instanceof InvalidInputError &&
      error.code === "invalid_public_key" && pattern.test(error.detail),
    label,
  );
}

Deno.test("parseDevicePublicKey() reads nebula-cert keygen output, CRLF too", async () => {
  const pair = await nebulaKeyPair();

  const key = parseDevicePublicKey(pair.publicPem);
  const crlf = parseDevicePublicKey(pair.publicPem.replaceAll("\n", "\r\n"));
  const derived = await deriveX25519PublicKey(
    decodePemBlocks(pair.privatePem)[0].bytes,
  );

  assert.equal(key.length, 32);
  assert.deepEqual(crlf, key);
  assert.deepEqual(
    derived,
    key,
    "X25519(private) equals nebula-cert's public key",
  );
});

Deno.test("parseDevicePublicKey() names what is wrong", async () => {
  const pair = await nebulaKeyPair();
  const ed25519 = "-----BEGIN NEBULA ED25519 PUBLIC KEY-----\n" +
    btoa("x".repeat(32)) + "\n-----END NEBULA ED25519 PUBLIC KEY-----\n";
  const openssl =
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEAG8iGeGCzZ8F8CbiE0Bd3qkNNk1zc5bHydhnOpbW0PiE=\n-----END PUBLIC KEY-----\n";
  const short = "-----BEGIN NEBULA X25519 PUBLIC KEY-----\n" +
    btoa("x".repeat(31)) + "\n-----END NEBULA X25519 PUBLIC KEY-----\n";
  const badBase64 =
    "-----BEGIN NEBULA X25519 PUBLIC KEY-----\n!!!!\n-----END NEBULA X25519 PUBLIC KEY-----\n";

  rejectsKey("", /empty/, "empty");
  rejectsKey(undefined, /empty/, "missing");
  rejectsKey("not a pem", /not PEM.*nebula-cert keygen/, "plain text");
  rejectsKey(ed25519, /Ed25519/, "ed25519");
  rejectsKey(openssl, /PUBLIC KEY.*nebula-cert keygen/, "openssl");
  rejectsKey(short, /32 bytes.*31/, "short");
  rejectsKey(badBase64, /base64/, "bad base64");
  rejectsKey(pair.publicPem + pair.publicPem, /2 PEM blocks/, "two blocks");
  rejectsKey(pair.privatePem, /private key/, "private key");
});

Deno.test("parseDevicePublicKey() never echoes a private key", async () => {
  const pair = await nebulaKeyPair();
  const secret = pair.privatePem.split("\n")[1];

  try {
    parseDevicePublicKey(pair.privatePem);
    assert.fail("a private key must be rejected");
  } catch (error) {
    assert.ok(error instanceof InvalidInputError);
    assert.ok(
      !JSON.stringify({ detail: error.detail, ...error.extensions }).includes(
        secret.slice(0, 12),
      ),
    );
  }
});

Deno.test("generateX25519KeyPair() writes keys in nebula-cert's form", async () => {
  const ours = await generateX25519KeyPair();
  const theirs = await nebulaKeyPair();

  const shape = (pem: string) => pem.replace(/^[A-Za-z0-9+/=]+$/gm, "B64");
  assert.equal(shape(ours.publicPem), shape(theirs.publicPem));
  assert.equal(shape(ours.privatePem), shape(theirs.privatePem));
  assert.deepEqual(
    await deriveX25519PublicKey(ours.privateKey),
    ours.publicKey,
  );
});
