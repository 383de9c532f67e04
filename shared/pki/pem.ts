/** PEM as Go's encoding/pem writes it: standard base64, 64-column lines, no headers. */
import { decodeBase64, encodeBase64 } from "./base64.ts";

export const PEM_TYPES = {
  certificate: "NEBULA CERTIFICATE",
  certificateV2: "NEBULA CERTIFICATE V2",
  x25519Public: "NEBULA X25519 PUBLIC KEY",
  x25519Private: "NEBULA X25519 PRIVATE KEY",
  ed25519Public: "NEBULA ED25519 PUBLIC KEY",
  ed25519Private: "NEBULA ED25519 PRIVATE KEY",
} as const;

export interface PemBlock {
  type: string;
  bytes: Uint8Array;
}

export function encodePem(type: string, bytes: Uint8Array): string {
  const body = encodeBase64(bytes).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${body.join("\n")}${
    body.length ? "\n" : ""
  }-----END ${type}-----\n`;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/**
 * Finds every PEM block in `text`. Accepts CRLF line ends and unwrapped
 * base64, as Go's pem.Decode does; throws SyntaxError on bad base64.
 */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) {
    const body = match[2].replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new SyntaxError(`The ${match[1]} block is not valid base64`);
    }
    blocks.push({ type: match[1], bytes: decodeBase64(body) });
  }
  return blocks;
}
