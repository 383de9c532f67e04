/** PEM and base64 helpers in the exact form Go's `pem.EncodeToMemory` writes. */

export const X25519_PRIVATE_KEY_TYPE = "NEBULA X25519 PRIVATE KEY";
export const X25519_PUBLIC_KEY_TYPE = "NEBULA X25519 PUBLIC KEY";
export const CERTIFICATE_TYPE = "NEBULA CERTIFICATE";

/** Encodes bytes as standard base64 with padding, in chunks to keep the call stack flat. */
export function encodeBase64(bytes: Uint8Array): string {
  const chunkSize = 0x8000;
  let binary = "";
  for (let offset = 0; offset < bytes.length; offset += chunkSize) {
    const chunk = bytes.subarray(offset, offset + chunkSize);
    binary += String.fromCharCode.apply(null, Array.from(chunk));
  }

  return btoa(binary);
}

/** Decodes standard base64; throws on any character outside the alphabet. */
export function decodeBase64(text: string): Uint8Array {
  const binary = atob(text.replace(/\s+/g, ""));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);

  return bytes;
}

/** Writes one PEM block: 64-column base64 and a trailing newline, no headers. */
export function encodePem(type: string, bytes: Uint8Array): string {
  const lines = encodeBase64(bytes).match(/.{1,64}/g) ?? [];

  return `-----BEGIN ${type}-----\n${
    lines.join("\n")
  }\n-----END ${type}-----\n`;
}

/** One block of a PEM file. */
export interface PemBlock {
  type: string;
  bytes: Uint8Array;
}

/** Reads every PEM block of a text; LF and CRLF line endings are both accepted. */
export function decodePemBlocks(text: string): PemBlock[] {
  const pattern =
    /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(pattern)) {
    blocks.push({ type: match[1], bytes: decodeBase64(match[2]) });
  }

  return blocks;
}

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(
    "",
  );
}

/** Lowercase hex SHA-256 of bytes. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as BufferSource);

  return toHex(new Uint8Array(digest));
}
