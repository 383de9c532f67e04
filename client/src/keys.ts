/**
 * Nebula host keys: X25519, generated on the device. The private key is 32
 * random bytes stored unclamped and the public key is X25519(private, 9),
 * both in the PEM form `nebula-cert keygen` (1.6.1) writes.
 */
import {
  decodePemBlocks,
  encodePem,
  X25519_PRIVATE_KEY_TYPE,
  X25519_PUBLIC_KEY_TYPE,
} from "./pem.ts";

/** A host key pair in PEM form plus the raw public key. */
export interface KeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
  publicKey: Uint8Array;
}

// PKCS #8 header of an X25519 private key (RFC 8410): the 32 key bytes follow.
const PKCS8_X25519_PREFIX = new Uint8Array([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
]);

function decodeBase64Url(text: string): Uint8Array {
  const padded = text.replaceAll("-", "+").replaceAll("_", "/");
  const binary = atob(padded + "=".repeat((4 - padded.length % 4) % 4));

  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

/** Derives the X25519 public key of a raw 32-byte private key through WebCrypto. */
export async function derivePublicKey(
  privateKey: Uint8Array,
): Promise<Uint8Array> {
  if (privateKey.length !== 32) {
    throw new RangeError(
      `An X25519 private key has 32 bytes, got ${privateKey.length}`,
    );
  }

  const pkcs8 = new Uint8Array(PKCS8_X25519_PREFIX.length + 32);
  pkcs8.set(PKCS8_X25519_PREFIX);
  pkcs8.set(privateKey, PKCS8_X25519_PREFIX.length);
  const key = await crypto.subtle.importKey(
    "pkcs8",
    pkcs8,
    { name: "X25519" },
    true,
    ["deriveBits"],
  );
  const jwk = await crypto.subtle.exportKey("jwk", key);

  return decodeBase64Url(jwk.x!);
}

/** Generates a host key pair; the private key never leaves this process except to a file. */
export async function generateKeyPair(): Promise<KeyPair> {
  const privateKey = crypto.getRandomValues(new Uint8Array(32));
  const publicKey = await derivePublicKey(privateKey);

  return {
    privateKeyPem: encodePem(X25519_PRIVATE_KEY_TYPE, privateKey),
    publicKeyPem: encodePem(X25519_PUBLIC_KEY_TYPE, publicKey),
    publicKey,
  };
}

/**
 * Reads the raw key of the first PEM block of `type`. Returns null when the
 * text has no such block or the key is not 32 bytes.
 */
export function readRawKey(pem: string, type: string): Uint8Array | null {
  const block = decodePemBlocks(pem).find((candidate) =>
    candidate.type === type
  );
  if (!block || block.bytes.length !== 32) return null;

  return block.bytes;
}

/** Rebuilds the key pair of a private key PEM; null when the PEM is not a Nebula X25519 private key. */
export async function keyPairFromPrivatePem(
  privateKeyPem: string,
): Promise<KeyPair | null> {
  const privateKey = readRawKey(privateKeyPem, X25519_PRIVATE_KEY_TYPE);
  if (!privateKey) return null;

  const publicKey = await derivePublicKey(privateKey);

  return {
    privateKeyPem,
    publicKeyPem: encodePem(X25519_PUBLIC_KEY_TYPE, publicKey),
    publicKey,
  };
}
