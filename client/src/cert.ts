/**
 * Reads the fields of a Nebula v1 certificate (protobuf `RawNebulaCertificate`)
 * that the client checks: public key, overlay IP, validity, issuer. It does
 * not verify the signature; `nebula-cert verify` and the daemon do that.
 */
import { CERTIFICATE_TYPE, decodePemBlocks, sha256Hex, toHex } from "./pem.ts";

/** Certificate fields that the client checks. */
export interface CertificateInfo {
  name: string;
  /** Overlay address with prefix, e.g. `10.42.0.5/24`; null when the certificate has none. */
  ip: string | null;
  publicKey: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  /** Lowercase hex fingerprint of the signing CA; empty on a CA. */
  issuer: string;
  /** Lowercase hex SHA-256 of the whole certificate. */
  fingerprint: string;
}

interface Field {
  number: number;
  varint?: bigint;
  bytes?: Uint8Array;
}

function readVarint(
  bytes: Uint8Array,
  offset: number,
): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (let i = offset; i < bytes.length && shift < 70n; i++) {
    value |= BigInt(bytes[i] & 0x7f) << shift;
    shift += 7n;
    if ((bytes[i] & 0x80) === 0) return [value, i + 1];
  }
  throw new RangeError("truncated varint");
}

/** Splits a protobuf message into its fields; only varint and length-delimited wire types occur in Nebula v1. */
function readFields(bytes: Uint8Array): Field[] {
  const fields: Field[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const [tag, afterTag] = readVarint(bytes, offset);
    const number = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    const [value, afterValue] = readVarint(bytes, afterTag);
    if (wireType === 0) {
      fields.push({ number, varint: value });
      offset = afterValue;
    } else if (wireType === 2) {
      const end = afterValue + Number(value);
      if (end > bytes.length) throw new RangeError("truncated field");
      fields.push({ number, bytes: bytes.subarray(afterValue, end) });
      offset = end;
    } else {
      throw new RangeError(`unexpected wire type ${wireType}`);
    }
  }

  return fields;
}

function readPackedUint32(bytes: Uint8Array): number[] {
  const values: number[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const [value, next] = readVarint(bytes, offset);
    values.push(Number(value));
    offset = next;
  }

  return values;
}

function formatIp(ip: number, mask: number): string {
  const octets = [24, 16, 8, 0].map((shift) => (ip >>> shift) & 0xff);
  const prefix = mask.toString(2).replace(/0+$/, "").length;

  return `${octets.join(".")}/${prefix}`;
}

/** Parses the first `NEBULA CERTIFICATE` block of a PEM text; throws RangeError when there is none or it is malformed. */
export async function parseCertificate(pem: string): Promise<CertificateInfo> {
  const block = decodePemBlocks(pem).find((candidate) =>
    candidate.type === CERTIFICATE_TYPE
  );
  if (!block) throw new RangeError(`no ${CERTIFICATE_TYPE} block`);

  return await parseCertificateBytes(block.bytes);
}

/** Parses every certificate of a CA bundle. */
export async function parseCertificates(
  pem: string,
): Promise<CertificateInfo[]> {
  const blocks = decodePemBlocks(pem).filter((block) =>
    block.type === CERTIFICATE_TYPE
  );

  return await Promise.all(
    blocks.map((block) => parseCertificateBytes(block.bytes)),
  );
}

async function parseCertificateBytes(
  bytes: Uint8Array,
): Promise<CertificateInfo> {
  const details = readFields(bytes).find((field) => field.number === 1)?.bytes;
  if (!details) throw new RangeError("certificate has no details");

  const info: CertificateInfo = {
    name: "",
    ip: null,
    publicKey: new Uint8Array(),
    notBefore: new Date(0),
    notAfter: new Date(0),
    isCa: false,
    issuer: "",
    fingerprint: await sha256Hex(bytes),
  };
  for (const field of readFields(details)) applyField(info, field);

  return info;
}

function applyField(info: CertificateInfo, field: Field): void {
  switch (field.number) {
    case 1:
      info.name = new TextDecoder().decode(field.bytes);
      break;
    case 2: {
      const ips = readPackedUint32(field.bytes ?? new Uint8Array());
      if (ips.length >= 2) info.ip = formatIp(ips[0], ips[1]);
      break;
    }
    case 5:
      info.notBefore = new Date(Number(field.varint) * 1000);
      break;
    case 6:
      info.notAfter = new Date(Number(field.varint) * 1000);
      break;
    case 7:
      info.publicKey = field.bytes ?? new Uint8Array();
      break;
    case 8:
      info.isCa = field.varint === 1n;
      break;
    case 9:
      info.issuer = toHex(field.bytes ?? new Uint8Array());
      break;
  }
}
