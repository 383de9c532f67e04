/**
 * CA private keys at rest: AES-256-GCM under a key-encryption key (KEK) held
 * as a secret, with the project id as additional data, so a sealed key copied
 * to another project's row does not open.
 */
import { decodeBase64 } from "./base64.ts";

type Bytes = Uint8Array<ArrayBuffer>;

export interface SealedKey {
  ciphertext: Uint8Array;
  /** 12 random bytes, new for every seal. */
  nonce: Uint8Array;
}

/** Decodes the base64 KEK from the environment; it must be 32 bytes. */
export function parseKek(base64: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = decodeBase64(base64.trim());
  } catch {
    throw new RangeError("NEBULA_CA_KEK is not valid base64");
  }
  if (bytes.length !== 32) {
    throw new RangeError(
      `NEBULA_CA_KEK must decode to 32 bytes, got ${bytes.length}`,
    );
  }
  return bytes;
}

interface ImportedKek {
  /** Copy of the bytes the key was imported from, to detect a KEK changed in place. */
  bytes: Uint8Array;
  key: Promise<CryptoKey>;
}

/**
 * Imported KEKs, keyed by array identity. A function instance keeps one KEK
 * for its whole life, so each KEK is imported once, not once per seal or open.
 * The KEK is imported again when its array no longer contains the copied
 * bytes. Nothing here is logged.
 */
const importedKeks = new WeakMap<Uint8Array, ImportedKek>();

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let index = 0; index < a.length; index++) {
    difference |= a[index] ^ b[index];
  }
  return difference === 0;
}

function importKek(kek: Uint8Array): Promise<CryptoKey> {
  const cached = importedKeks.get(kek);
  if (cached && sameBytes(cached.bytes, kek)) return cached.key;
  const bytes = kek.slice();
  const key = crypto.subtle.importKey("raw", bytes, "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  importedKeks.set(kek, { bytes, key });
  // A KEK that fails to import fails on every call, so no entry is kept for it.
  key.catch(() => {
    if (importedKeks.get(kek)?.key === key) importedKeks.delete(kek);
  });
  return key;
}

export async function sealCaKey(
  kek: Uint8Array,
  projectId: string,
  key: Uint8Array,
): Promise<SealedKey> {
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const ciphertext = await crypto.subtle.encrypt(
    {
      name: "AES-GCM",
      iv: nonce,
      additionalData: new TextEncoder().encode(projectId),
    },
    await importKek(kek),
    key as Bytes,
  );
  return { ciphertext: new Uint8Array(ciphertext), nonce };
}

/** Opens a sealed CA key; throws when the KEK, project or ciphertext do not match. */
export async function openCaKey(
  kek: Uint8Array,
  projectId: string,
  sealed: SealedKey,
): Promise<Uint8Array> {
  try {
    const plaintext = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: sealed.nonce as Bytes,
        additionalData: new TextEncoder().encode(projectId),
      },
      await importKek(kek),
      sealed.ciphertext as Bytes,
    );
    return new Uint8Array(plaintext);
  } catch {
    // The WebCrypto error carries no useful detail, and no key byte may leak.
    throw new Error(
      "Could not open the CA private key: wrong key-encryption key or damaged data",
    );
  }
}
