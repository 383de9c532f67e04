/**
 * checkX25519PublicKey() against WebCrypto as the oracle. X25519 deriveBits
 * with a fresh private key fails on exactly the small-order keys, so every
 * rejected value and each of its other encodings must fail there too. The
 * check is stricter than WebCrypto on encodings: it also rejects bit 255 set
 * and values from p = 2^255 - 19 up, which WebCrypto reduces and accepts.
 * Random canonical keys and nebula-cert keys must pass both.
 */
import assert from "node:assert/strict";
import { InvalidInputError } from "../../shared/errors.ts";
import {
  checkX25519PublicKey,
  generateX25519KeyPair,
  parseDevicePublicKey,
} from "../../shared/pki/keys.ts";
import { nebulaCert } from "./oracle.ts";

const P = (1n << 255n) - 19n;
const A = 486662n;

/** u-coordinates of the four order-8 points on Curve25519. */
const ORDER_8_LOW =
  0x00b8495f16056286fdb1329ceb8d09da6ac49ff1fae35616aeb8413b7c7aebe0n;
const ORDER_8_HIGH =
  0x57119fd0dd4e22d8868e1c58c45c44045bef839c55b1d0b1248c50a3bc959c5fn;
/** Small-order u-coordinates mod p, the values the check rejects. */
const SMALL_ORDER = [0n, 1n, P - 1n, ORDER_8_LOW, ORDER_8_HIGH];

/** Encodes `value` as 32 little-endian bytes, setting bit 255 when `highBit` is true. */
function encode(value: bigint, highBit = false): Uint8Array {
  const bytes = new Uint8Array(32);
  for (let index = 0; index < 32; index++) {
    bytes[index] = Number((value >> BigInt(8 * index)) & 0xffn);
  }
  if (highBit) bytes[31] |= 0x80;
  return bytes;
}

/** Lists the 32-byte strings X25519 reads as `value`: value and value + p while below 2^255, each with and without bit 255. */
function encodings(value: bigint): Uint8Array[] {
  const values = [value];
  if (value + P < 1n << 255n) values.push(value + P);
  return values.flatMap((v) => [encode(v), encode(v, true)]);
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Asks the oracle whether X25519 with a freshly generated private key accepts this peer key. */
async function webCryptoAccepts(publicKey: Uint8Array): Promise<boolean> {
  const own = await crypto.subtle.generateKey({ name: "X25519" }, false, [
    "deriveBits",
  ]) as CryptoKeyPair;
  try {
    const peer = await crypto.subtle.importKey(
      "raw",
      publicKey.slice(),
      { name: "X25519" },
      false,
      [],
    );
    await crypto.subtle.deriveBits(
      { name: "X25519", public: peer },
      own.privateKey,
      256,
    );
    return true;
  } catch {
    return false;
  }
}

/** Checks whether the bytes are what X25519 writes: a value below p, so bit 255 is clear. */
function isCanonical(bytes: Uint8Array): boolean {
  let value = 0n;
  for (let index = 31; index >= 0; index--) {
    value = (value << 8n) | BigInt(bytes[index]);
  }
  return value < P;
}

type Verdict = "accepted" | "non-canonical" | "small order";

/** Runs the check and names why it rejected the key, asserting the problem fields. */
function checkVerdict(publicKey: Uint8Array): Verdict {
  try {
    checkX25519PublicKey(publicKey);
    return "accepted";
  } catch (error) {
    assert.ok(error instanceof InvalidInputError, String(error));
    assert.equal(error.code, "invalid_public_key");
    assert.equal(error.errors[0].field, "publicKey");
    if (/not a canonical X25519 encoding/.test(error.detail)) {
      assert.match(error.errors[0].message, /canonical X25519 public key/);
      return "non-canonical";
    }
    assert.equal(error.errors[0].message, "must be a real X25519 public key");
    assert.match(error.detail, /degenerate X25519 point/);
    return "small order";
  }
}

function checkAccepts(publicKey: Uint8Array): boolean {
  return checkVerdict(publicKey) === "accepted";
}

async function assertAgree(publicKey: Uint8Array, expected: boolean) {
  const label = hex(publicKey);
  assert.equal(await webCryptoAccepts(publicKey), expected, `oracle: ${label}`);
  assert.equal(checkAccepts(publicKey), expected, `check: ${label}`);
}

/** Asserts that the check rejects a non-canonical encoding that WebCrypto accepts. */
async function assertStricter(publicKey: Uint8Array) {
  const label = hex(publicKey);
  assert.equal(await webCryptoAccepts(publicKey), true, `oracle: ${label}`);
  assert.equal(checkVerdict(publicKey), "non-canonical", `check: ${label}`);
}

Deno.test("order-8 values double to u = 1", () => {
  // x-only doubling on Curve25519: u(2P) = (u^2 - 1)^2 / (4u(u^2 + Au + 1)).
  for (const u of [ORDER_8_LOW, ORDER_8_HIGH]) {
    const numerator = ((u * u - 1n) ** 2n) % P;
    const denominator = (4n * u * (u * u + A * u + 1n)) % P;
    assert.equal(numerator, denominator, u.toString(16));
  }
});

Deno.test("checkX25519PublicKey() rejects small-order encodings", async () => {
  let count = 0;
  for (const value of SMALL_ORDER) {
    for (const bytes of encodings(value)) {
      const expected = isCanonical(bytes) ? "small order" : "non-canonical";

      await assertAgree(bytes, false);
      assert.equal(checkVerdict(bytes), expected, hex(bytes));
      count++;
    }
  }
  // Five values. Only 0 and 1 are below 2^255 - p = 19, so only they also
  // have the encoding value + p. Each encoding comes with and without bit 255.
  assert.equal(count, 14);
});

Deno.test("checkX25519PublicKey() accepts small-order neighbours", async () => {
  for (const value of SMALL_ORDER) {
    for (const neighbour of [value - 1n, value + 1n]) {
      // Wrap into [0, p) and skip neighbours that are small-order themselves.
      const wrapped = ((neighbour % P) + P) % P;
      if (SMALL_ORDER.includes(wrapped)) continue;
      for (const bytes of encodings(wrapped)) {
        if (isCanonical(bytes)) await assertAgree(bytes, true);
        else await assertStricter(bytes);
      }
    }
  }
});

Deno.test("checkX25519PublicKey() accepts random keys", async () => {
  for (let index = 0; index < 2000; index++) {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    // A random 255-bit value is at least p with probability below 2^-250.
    bytes[31] &= 0x7f;
    await assertAgree(bytes, true);
    bytes[31] |= 0x80;
    await assertStricter(bytes);
  }
  for (let index = 0; index < 100; index++) {
    await assertAgree((await generateX25519KeyPair()).publicKey, true);
  }
});

Deno.test("checkX25519PublicKey() accepts nebula-cert keygen keys", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-small-order-" });
  try {
    // Enough keys that a check tripping on one key in a hundred would fail.
    for (let index = 0; index < 300; index++) {
      await nebulaCert([
        "keygen",
        "-out-key",
        `${dir}/${index}.key`,
        "-out-pub",
        `${dir}/${index}.pub`,
      ]);
      const publicKey = parseDevicePublicKey(
        await Deno.readTextFile(`${dir}/${index}.pub`),
      );
      await assertAgree(publicKey, true);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkX25519PublicKey() rejects values from p + 2 up", async () => {
  // p and p + 1 read as 0 and 1, so the small-order test covers them.
  const values = [P + 2n, P + 3n, P + 18n, (1n << 255n) - 1n];
  for (const value of values) {
    await assertStricter(encode(value));
  }
});

Deno.test("checkX25519PublicKey() accepts p - 2", async () => {
  // p - 1 is small order, so p - 2 is the largest value the check accepts.
  await assertAgree(encode(P - 2n), true);
});

Deno.test("checkX25519PublicKey() rejects nebula-cert keys with bit 255", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-small-order-" });
  try {
    for (let index = 0; index < 5; index++) {
      await nebulaCert([
        "keygen",
        "-out-key",
        `${dir}/${index}.key`,
        "-out-pub",
        `${dir}/${index}.pub`,
      ]);
      const publicKey = parseDevicePublicKey(
        await Deno.readTextFile(`${dir}/${index}.pub`),
      ).slice();
      publicKey[31] |= 0x80;

      await assertStricter(publicKey);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkX25519PublicKey() rejects wrong lengths", async () => {
  for (const length of [0, 31, 33, 64]) {
    await assertAgree(new Uint8Array(length).fill(9), false);
  }
});
