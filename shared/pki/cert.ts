/**
 * Nebula v1 certificates (the only format Nebula 1.6 reads): a protobuf
 * `RawNebulaCertificate { Details = 1; Signature = 2 }`. The signature is
 * Ed25519 over the encoded Details message alone, without its outer tag.
 */
import { createHash } from "node:crypto";
import { fromHex, toHex } from "./base64.ts";
import { ProtobufReader, ProtobufWriter, readPacked } from "./protobuf.ts";

/** An IPv4 address and its mask, each the big-endian uint32 of its 4 bytes. */
export interface IpNet {
  ip: number;
  mask: number;
}

export interface CertificateDetails {
  name: string;
  ips: IpNet[];
  subnets: IpNet[];
  groups: string[];
  /** Unix seconds. */
  notBefore: number;
  /** Unix seconds. */
  notAfter: number;
  publicKey: Uint8Array;
  isCa: boolean;
  /** Lowercase hex fingerprint of the signing CA; empty on a CA. */
  issuer: string;
}

export interface Certificate {
  details: CertificateDetails;
  signature: Uint8Array;
}

const FIELD = {
  name: 1,
  ips: 2,
  subnets: 3,
  groups: 4,
  notBefore: 5,
  notAfter: 6,
  publicKey: 7,
  isCa: 8,
  issuer: 9,
} as const;

const utf8 = new TextEncoder();

function flatten(nets: IpNet[]): number[] {
  return nets.flatMap((net) => [net.ip >>> 0, net.mask >>> 0]);
}

/** Encodes the Details message exactly as Go's proto.Marshal does. */
export function encodeDetails(details: CertificateDetails): Uint8Array {
  const writer = new ProtobufWriter();
  if (details.name) writer.bytesField(FIELD.name, utf8.encode(details.name));
  if (details.ips.length) writer.packedField(FIELD.ips, flatten(details.ips));
  if (details.subnets.length) {
    writer.packedField(FIELD.subnets, flatten(details.subnets));
  }
  for (const group of details.groups) {
    writer.bytesField(FIELD.groups, utf8.encode(group));
  }
  if (details.notBefore) writer.varintField(FIELD.notBefore, details.notBefore);
  if (details.notAfter) writer.varintField(FIELD.notAfter, details.notAfter);
  if (details.publicKey.length) {
    writer.bytesField(FIELD.publicKey, details.publicKey);
  }
  if (details.isCa) writer.varintField(FIELD.isCa, 1);
  if (details.issuer) writer.bytesField(FIELD.issuer, fromHex(details.issuer));
  return writer.finish();
}

export function encodeCertificate(certificate: Certificate): Uint8Array {
  return joinCertificate(
    encodeDetails(certificate.details),
    certificate.signature,
  );
}

/** Wraps already encoded details and their signature; saves encoding the details twice. */
export function joinCertificate(
  details: Uint8Array,
  signature: Uint8Array,
): Uint8Array {
  return new ProtobufWriter()
    .bytesField(1, details)
    .bytesField(2, signature)
    .finish();
}

function pairs(values: number[]): IpNet[] {
  if (values.length % 2 !== 0) {
    throw new RangeError("Encoded IPs and masks must come in pairs");
  }
  const nets: IpNet[] = [];
  for (let index = 0; index < values.length; index += 2) {
    nets.push({ ip: values[index], mask: values[index + 1] });
  }
  return nets;
}

const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Decodes a Details message; unknown fields are rejected, as Nebula 1.6 would fail them. */
export function decodeDetails(bytes: Uint8Array): CertificateDetails {
  const details: CertificateDetails = {
    name: "",
    ips: [],
    subnets: [],
    groups: [],
    notBefore: 0,
    notAfter: 0,
    publicKey: new Uint8Array(),
    isCa: false,
    issuer: "",
  };
  const reader = new ProtobufReader(bytes);
  while (!reader.done) {
    const { field, value } = reader.field();
    const data = value instanceof Uint8Array ? value : undefined;
    const number = typeof value === "number" ? value : undefined;
    if (field === FIELD.name && data) details.name = utf8Strict.decode(data);
    else if (field === FIELD.ips && data) {
      details.ips.push(...pairs(readPacked(data)));
    } else if (field === FIELD.subnets && data) {
      details.subnets.push(...pairs(readPacked(data)));
    } else if (field === FIELD.groups && data) {
      details.groups.push(utf8Strict.decode(data));
    } else if (field === FIELD.notBefore && number !== undefined) {
      details.notBefore = number;
    } else if (field === FIELD.notAfter && number !== undefined) {
      details.notAfter = number;
    } else if (field === FIELD.publicKey && data) {
      details.publicKey = data.slice();
    } else if (field === FIELD.isCa && number !== undefined) {
      details.isCa = number !== 0;
    } else if (field === FIELD.issuer && data) details.issuer = toHex(data);
    else {throw new RangeError(
        `Unexpected field ${field} in certificate details`,
      );}
  }
  return details;
}

export function decodeCertificate(bytes: Uint8Array): Certificate {
  const reader = new ProtobufReader(bytes);
  let details: CertificateDetails | undefined;
  let signature: Uint8Array | undefined;
  while (!reader.done) {
    const { field, value } = reader.field();
    if (field === 1 && value instanceof Uint8Array) {
      details = decodeDetails(value);
    } else if (field === 2 && value instanceof Uint8Array) {
      signature = value.slice();
    } else throw new RangeError(`Unexpected field ${field} in certificate`);
  }
  if (!details || !signature) {
    throw new RangeError("Certificate data lacks details or signature");
  }
  return { details, signature };
}

/**
 * Lowercase hex SHA-256 of the whole encoded certificate, as Nebula prints
 * and blocks it. Hashed synchronously with node:crypto: in Deno 2.9 an
 * awaited crypto.subtle.digest costs about 30 µs of dispatch per call, more
 * than the rest of a signature.
 */
export function fingerprint(certificateBytes: Uint8Array): Promise<string> {
  return Promise.resolve(
    createHash("sha256").update(certificateBytes).digest("hex"),
  );
}

/** Parses dotted IPv4 into a uint32. */
export function ipToInt(ip: string): number {
  const parts = ip.split(".");
  if (
    parts.length !== 4 ||
    parts.some((part) => !/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255)
  ) {
    throw new RangeError(`Invalid IPv4 address: ${ip}`);
  }
  return parts.reduce((value, part) => value * 256 + Number(part), 0);
}

export function intToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 0xff).join(".");
}

export function prefixToMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** Returns the prefix length of a contiguous mask, or -1 when the mask has holes. */
export function maskToPrefix(mask: number): number {
  for (let length = 0; length <= 32; length++) {
    if (prefixToMask(length) === mask >>> 0) return length;
  }
  return -1;
}
