/**
 * Key material through WebCrypto: X25519 for hosts (Nebula's Diffie-Hellman
 * keys) and Ed25519 for CAs. Raw key layouts follow nebula-cert: a host
 * private key is 32 bytes, a CA private key 64 bytes (seed then public key).
 */
import { InvalidInputError } from "../errors.ts";
import { decodeBase64, encodeBase64 } from "./base64.ts";
import { decodePemBlocks, encodePem, PEM_TYPES } from "./pem.ts";

type Bytes = Uint8Array<ArrayBuffer>;

function base64Url(bytes: Uint8Array): string {
  return encodeBase64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(
    /=+$/,
    "",
  );
}

function fromBase64Url(text: string): Uint8Array {
  const padded = text.replaceAll("-", "+").replaceAll("_", "/");
  return decodeBase64(padded + "=".repeat((4 - padded.length % 4) % 4));
}

export interface X25519KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
  publicPem: string;
  privatePem: string;
}

/** Generates a host key pair in the form `nebula-cert keygen` writes. */
export async function generateX25519KeyPair(): Promise<X25519KeyPair> {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, [
    "deriveBits",
  ]) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const privateKey = fromBase64Url(jwk.d!);
  const publicKey = fromBase64Url(jwk.x!);
  return {
    publicKey,
    privateKey,
    publicPem: encodePem(PEM_TYPES.x25519Public, publicKey),
    privatePem: encodePem(PEM_TYPES.x25519Private, privateKey),
  };
}

/** Derives the X25519 public key of a raw 32-byte private key. */
export async function deriveX25519PublicKey(
  privateKey: Uint8Array,
): Promise<Uint8Array> {
  const basePoint = new Uint8Array(32);
  basePoint[0] = 9;
  const key = await crypto.subtle.importKey(
    "jwk",
    {
      kty: "OKP",
      crv: "X25519",
      d: base64Url(privateKey),
      x: base64Url(basePoint),
    },
    { name: "X25519" },
    true,
    ["deriveBits"],
  );
  // WebCrypto recomputes the public half from d on export.
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return fromBase64Url(jwk.x!);
}

export interface Ed25519KeyPair {
  /** 64 bytes: 32-byte seed then 32-byte public key, as Go's ed25519.PrivateKey. */
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export async function generateEd25519KeyPair(): Promise<Ed25519KeyPair> {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const seed = fromBase64Url(jwk.d!);
  const publicKey = fromBase64Url(jwk.x!);
  const privateKey = new Uint8Array(64);
  privateKey.set(seed);
  privateKey.set(publicKey, 32);
  return { privateKey, publicKey };
}

const signingKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();

function importSigningKey(privateKey: Uint8Array): Promise<CryptoKey> {
  if (privateKey.length !== 64) {
    throw new RangeError(
      `A CA private key is 64 bytes, got ${privateKey.length}`,
    );
  }
  let key = signingKeys.get(privateKey);
  if (!key) {
    key = crypto.subtle.importKey(
      "jwk",
      {
        kty: "OKP",
        crv: "Ed25519",
        d: base64Url(privateKey.subarray(0, 32)),
        x: base64Url(privateKey.subarray(32)),
      },
      { name: "Ed25519" },
      false,
      ["sign"],
    );
    signingKeys.set(privateKey, key);
  }
  return key;
}

/** Signs `data` with a 64-byte CA key; Ed25519 is deterministic, so equal input gives equal bytes. */
export async function signEd25519(
  privateKey: Uint8Array,
  data: Uint8Array,
): Promise<Uint8Array> {
  const key = await importSigningKey(privateKey);
  return new Uint8Array(
    await crypto.subtle.sign({ name: "Ed25519" }, key, data as Bytes),
  );
}

export async function verifyEd25519(
  publicKey: Uint8Array,
  data: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const key = await crypto.subtle.importKey(
    "raw",
    publicKey as Bytes,
    { name: "Ed25519" },
    false,
    ["verify"],
  );
  return await crypto.subtle.verify(
    { name: "Ed25519" },
    key,
    signature as Bytes,
    data as Bytes,
  );
}

/** Checks that the public half stored in a 64-byte CA key matches its seed. */
export async function checkEd25519KeyPair(
  privateKey: Uint8Array,
): Promise<boolean> {
  const probe = new TextEncoder().encode("vidsync-mesh key check");
  const signature = await signEd25519(privateKey, probe);
  return await verifyEd25519(privateKey.subarray(32), probe, signature);
}

function keyError(detail: string, message: string): InvalidInputError {
  return new InvalidInputError(
    detail,
    [{ field: "publicKey", message }],
    "invalid_public_key",
  );
}

const HOW_TO =
  "generate one with `nebula-cert keygen` or the VidSync client library";

/**
 * Parses a device's `NEBULA X25519 PUBLIC KEY` PEM into its 32 raw bytes.
 * Every rejection names what was found instead; a private key sent by
 * mistake is reported without echoing any of it.
 */
export function parseDevicePublicKey(pem: unknown): Uint8Array {
  if (typeof pem !== "string" || pem.trim() === "") {
    throw keyError(
      "The public key is empty",
      `must be a NEBULA X25519 PUBLIC KEY PEM; ${HOW_TO}`,
    );
  }
  if (/PRIVATE KEY-----/.test(pem)) {
    throw keyError(
      "A private key was sent where the public key belongs; keep the private key on the device and send only the public key",
      "must be a public key, not a private key",
    );
  }

  let blocks;
  try {
    blocks = decodePemBlocks(pem);
  } catch {
    throw keyError(
      "The public key PEM is not valid base64",
      "base64 payload is invalid",
    );
  }
  if (blocks.length === 0) {
    throw keyError(
      `The public key is not PEM; ${HOW_TO}`,
      "must be a NEBULA X25519 PUBLIC KEY PEM",
    );
  }
  if (blocks.length > 1) {
    throw keyError(
      `Found ${blocks.length} PEM blocks; send exactly one public key`,
      "must contain exactly one PEM block",
    );
  }

  const [block] = blocks;
  if (!/^\s*-----BEGIN [^\n]+-----[\s\S]*-----END [^\n]+-----\s*$/.test(pem)) {
    throw keyError(
      "The public key has text before or after its PEM block; send only the block",
      "must contain only the PEM block",
    );
  }
  if (block.type !== PEM_TYPES.x25519Public) {
    throw keyError(
      `Expected a NEBULA X25519 PUBLIC KEY, found ${
        describePemType(block.type)
      }; ${HOW_TO}`,
      `wrong key type: ${block.type}`,
    );
  }
  if (block.bytes.length !== 32) {
    throw keyError(
      `An X25519 public key is 32 bytes, this one is ${block.bytes.length}`,
      "must be 32 bytes",
    );
  }
  return block.bytes;
}

function describePemType(type: string): string {
  if (type === "PUBLIC KEY") {
    return "a DER-wrapped PUBLIC KEY (as openssl writes), which Nebula does not read";
  }
  if (type.startsWith("NEBULA ED25519")) {
    return `an Ed25519 key (${type}), which is a CA signing key`;
  }
  if (type.includes("P256")) {
    return `a P-256 key (${type}), which Nebula 1.6 does not support`;
  }
  if (type.startsWith("NEBULA CERTIFICATE")) return `a certificate (${type})`;
  return `a ${type} block`;
}

/** Little-endian bytes of a 256-bit value given as big-endian hex. */
function littleEndian(hex: string): Uint8Array {
  const bytes = new Uint8Array(32);
  for (let index = 0; index < 32; index++) {
    bytes[index] = parseInt(hex.slice(62 - 2 * index, 64 - 2 * index), 16);
  }
  return bytes;
}

/**
 * Small-order X25519 u-coordinates, reduced mod p = 2^255 - 19. They are 0
 * (order 2), 1 (order 4), p - 1 (order 4 on the twist) and the two
 * u-coordinates of the four order-8 points. X25519 with a clamped private key,
 * which is a multiple of 8, maps each of them to zero. The order-8 values were
 * found by multiplying random curve points by the prime subgroup order and
 * keeping the results that double to u = 1. tests/pki/small_order_test.ts
 * checks the list against WebCrypto.
 */
const SMALL_ORDER_U = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0000000000000000000000000000000000000000000000000000000000000001",
  "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffec",
  "00b8495f16056286fdb1329ceb8d09da6ac49ff1fae35616aeb8413b7c7aebe0",
  "57119fd0dd4e22d8868e1c58c45c44045bef839c55b1d0b1248c50a3bc959c5f",
].map(littleEndian);

/**
 * Reduces a 32-byte u-coordinate the way X25519 reads it, which ignores bit 255
 * and takes the rest mod p. It does not branch on the key bytes. A value u
 * below 2^255 is at least p exactly when u + 19 reaches 2^255, and then u - p
 * equals u + 19 without bit 255.
 */
function canonicalU(publicKey: Uint8Array): Uint8Array {
  const u = publicKey.slice(0, 32);
  u[31] &= 0x7f;
  const plus19 = new Uint8Array(32);
  let carry = 19;
  for (let index = 0; index < 32; index++) {
    const sum = u[index] + carry;
    plus19[index] = sum & 0xff;
    carry = sum >> 8;
  }
  // 0xff when u >= p, else 0.
  const reduce = -(plus19[31] >> 7) & 0xff;
  plus19[31] &= 0x7f;
  for (let index = 0; index < 32; index++) {
    u[index] = (plus19[index] & reduce) | (u[index] & ~reduce);
  }
  return u;
}

/** Checks whether the key reduces to an entry of SMALL_ORDER_U, comparing every byte of every entry. */
function isSmallOrder(publicKey: Uint8Array): boolean {
  const u = canonicalU(publicKey);
  let found = 0;
  for (const bad of SMALL_ORDER_U) {
    let difference = 0;
    for (let index = 0; index < 32; index++) {
      difference |= u[index] ^ bad[index];
    }
    // 1 when difference is 0, else 0.
    found |= ((difference - 1) >> 8) & 1;
  }
  return found === 1;
}

/**
 * Checks whether the 32 bytes are the canonical encoding of a u-coordinate:
 * bit 255 clear and u below p = 2^255 - 19. X25519 writes its output this way
 * (RFC 7748, section 5), so every generated public key passes.
 */
function isCanonical(publicKey: Uint8Array): boolean {
  if (publicKey[31] & 0x80) return false;
  // u >= p exactly when u + 19 carries into bit 255.
  let carry = 19;
  for (let index = 0; index < 31; index++) {
    carry = (publicKey[index] + carry) >> 8;
  }
  return publicKey[31] + carry < 0x80;
}

/**
 * Rejects X25519 public keys that no key pair produces. A non-canonical
 * encoding (bit 255 set, or u >= 2^255 - 19) reads as the same key as its
 * canonical form, so it would slip past the byte comparison behind
 * `public_key_in_use`. Nebula 1.6.1 also compares the certificate's bytes with
 * the canonical key it derives from the private key, so it rejects such a
 * certificate at start. A small-order key, such as all zeros, gives an
 * all-zero shared secret. WebCrypto's X25519 deriveBits in Deno 2.9 raises
 * OperationError for exactly the small-order keys, but this check works on the
 * 32 bytes alone, so it needs no key pair.
 */
export function checkX25519PublicKey(publicKey: Uint8Array): void {
  if (publicKey.length === 32 && !isCanonical(publicKey)) {
    throw keyError(
      `The public key is not a canonical X25519 encoding: bit 255 (the top bit of the last byte) is set or the value is 2^255 - 19 or more, which no key pair produces; ${HOW_TO}`,
      "must be a canonical X25519 public key: top bit of the last byte clear, value below 2^255 - 19",
    );
  }
  if (publicKey.length !== 32 || isSmallOrder(publicKey)) {
    throw keyError(
      `The public key is a degenerate X25519 point that no key pair produces; ${HOW_TO}`,
      "must be a real X25519 public key",
    );
  }
}

/** Parses a `NEBULA ED25519 PRIVATE KEY` PEM into its 64 bytes. */
export function parseCaPrivateKey(pem: string): Uint8Array {
  const blocks = decodePemBlocks(pem);
  if (blocks.length !== 1 || blocks[0].type !== PEM_TYPES.ed25519Private) {
    throw new RangeError("Expected one NEBULA ED25519 PRIVATE KEY block");
  }
  if (blocks[0].bytes.length !== 64) {
    throw new RangeError(
      `A CA private key is 64 bytes, got ${blocks[0].bytes.length}`,
    );
  }
  return blocks[0].bytes;
}
