/**
 * Project CAs and host certificates. A CA is constrained to its project's
 * network (its `ips` field), so Nebula itself rejects any host certificate
 * outside the pool, and every rule Nebula checks on verification is checked
 * here before signing.
 */
import { InvalidInputError } from "../errors.ts";
import {
  type Certificate,
  type CertificateDetails,
  decodeCertificate,
  encodeCertificate,
  encodeDetails,
  fingerprint,
  intToIp,
  ipToInt,
  joinCertificate,
  maskToPrefix,
  prefixToMask,
} from "./cert.ts";
import { generateEd25519KeyPair, signEd25519, verifyEd25519 } from "./keys.ts";
import { decodePemBlocks, encodePem, PEM_TYPES } from "./pem.ts";

export interface SignedCertificate {
  certificate: Certificate;
  bytes: Uint8Array;
  pem: string;
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
}

export interface ProjectCa extends SignedCertificate {
  /** 64 bytes (seed then public key); seal it before storing, never log it. */
  privateKey: Uint8Array;
}

function toSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

/** Parses `a.b.c.d/n` into its address and prefix length. */
export function parseCidr(cidr: string): { ip: string; prefixLength: number } {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cidr);
  if (!match || Number(match[2]) > 32) {
    throw new RangeError(`Invalid IPv4 prefix: ${cidr}`);
  }
  ipToInt(match[1]);
  return { ip: match[1], prefixLength: Number(match[2]) };
}

async function finish(
  certificate: Certificate,
  detailsBytes?: Uint8Array,
): Promise<SignedCertificate> {
  const bytes = detailsBytes
    ? joinCertificate(detailsBytes, certificate.signature)
    : encodeCertificate(certificate);
  return {
    certificate,
    bytes,
    pem: encodePem(PEM_TYPES.certificate, bytes),
    fingerprint: await fingerprint(bytes),
    notBefore: new Date(certificate.details.notBefore * 1000),
    notAfter: new Date(certificate.details.notAfter * 1000),
  };
}

/**
 * Validity of a new CA: either explicit `notBefore`/`notAfter`, or `now`
 * plus `lifetimeSeconds`. `nebula-cert ca` 1.6.1 defaults to one
 * year, after which the whole mesh stops, so callers state the lifetime.
 */
export type CaValidityOptions =
  | { notBefore: Date; notAfter: Date }
  | { now: Date; lifetimeSeconds: number };

function caWindow(options: CaValidityOptions): [number, number] {
  if ("lifetimeSeconds" in options) {
    if (!Number.isSafeInteger(options.lifetimeSeconds)) {
      throw new RangeError(
        `CA lifetime must be whole seconds, got ${options.lifetimeSeconds}`,
      );
    }
    const start = toSeconds(options.now);
    return [start, start + options.lifetimeSeconds];
  }
  return [toSeconds(options.notBefore), toSeconds(options.notAfter)];
}

/** Creates a self-signed CA limited to the network `cidr`. */
export async function createCa(
  options: { name: string; cidr: string } & CaValidityOptions,
): Promise<ProjectCa> {
  const { ip, prefixLength } = parseCidr(options.cidr);
  const [notBefore, notAfter] = caWindow(options);
  if (notAfter <= notBefore) {
    throw new RangeError("A CA must end after it starts");
  }
  checkText(options.name, "name");

  const mask = prefixToMask(prefixLength);
  const keys = await generateEd25519KeyPair();
  const details: CertificateDetails = {
    name: options.name,
    ips: [{ ip: (ipToInt(ip) & mask) >>> 0, mask }],
    subnets: [],
    groups: [],
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    isCa: true,
    issuer: "",
  };
  const signature = await signEd25519(keys.privateKey, encodeDetails(details));

  return {
    ...await finish({ details, signature }),
    privateKey: keys.privateKey,
  };
}

/** Reads a PEM certificate (the first block) and its fingerprint. */
export async function readCertificatePem(
  pem: string,
): Promise<SignedCertificate> {
  const block = decodePemBlocks(pem).find((candidate) =>
    candidate.type === PEM_TYPES.certificate
  );
  if (!block) throw new RangeError("No NEBULA CERTIFICATE block found");
  return await finish(decodeCertificate(block.bytes));
}

/**
 * Checks a CA bundle before it ships and returns its CA fingerprints in
 * order. Every block must be a v1 `NEBULA CERTIFICATE`, because Nebula 1.6
 * to 1.9.4 refuse to start on a `NEBULA CERTIFICATE V2` block in `pki.ca`.
 * Every certificate must be a self-signed CA and, when `now` is given,
 * valid at `now`, because `nebula-cert verify` fails on any expired CA.
 */
export async function checkCaBundle(
  pem: string,
  now?: Date,
): Promise<string[]> {
  const blocks = decodePemBlocks(pem);
  if (blocks.length === 0) throw new RangeError("The CA bundle is empty");

  const fingerprints: string[] = [];
  for (const block of blocks) {
    if (block.type !== PEM_TYPES.certificate) {
      throw new RangeError(
        `The CA bundle contains a ${block.type} block, but Nebula 1.6 reads only ${PEM_TYPES.certificate} blocks`,
      );
    }
    const ca = await finish(decodeCertificate(block.bytes));
    await checkSelfSignedCa(ca, now);
    fingerprints.push(ca.fingerprint);
  }
  return fingerprints;
}

async function checkSelfSignedCa(
  ca: SignedCertificate,
  now?: Date,
): Promise<void> {
  const { details } = ca.certificate;
  if (!details.isCa) {
    throw new RangeError(`Certificate ${ca.fingerprint} is not a CA`);
  }
  const seconds = now ? toSeconds(now) : undefined;
  if (
    seconds !== undefined &&
    (details.notBefore > seconds || details.notAfter < seconds)
  ) {
    throw new RangeError(
      `CA ${ca.fingerprint} is not valid at ${now!.toISOString()}`,
    );
  }
  const valid = await verifyEd25519(
    details.publicKey,
    encodeDetails(details),
    ca.certificate.signature,
  );
  if (!valid) {
    throw new RangeError(`CA ${ca.fingerprint} is not correctly self-signed`);
  }
}

/**
 * Request for a host certificate. Validity is either explicit
 * `notBefore`/`notAfter`, or `lifetimeSeconds` from `now` capped to the CA's
 * NotAfter. With `now` given, a NotBefore after `now` is rejected, because
 * Nebula reports a certificate that is not valid yet as expired.
 */
export interface HostCertificateRequest {
  ca: SignedCertificate;
  caPrivateKey: Uint8Array;
  publicKey: Uint8Array;
  name: string;
  ip: string;
  prefixLength: number;
  groups: string[];
  notBefore?: Date;
  notAfter?: Date;
  now?: Date;
  lifetimeSeconds?: number;
}

/** Returns NotBefore and NotAfter in Unix seconds for `request`. */
function hostWindow(
  request: HostCertificateRequest,
  ca: CertificateDetails,
): [number, number] {
  const now = request.now ? toSeconds(request.now) : undefined;
  if (request.lifetimeSeconds !== undefined) {
    if (now === undefined || !(request.lifetimeSeconds > 0)) {
      throw new RangeError(
        `lifetimeSeconds must be positive and come with now, got ${request.lifetimeSeconds}`,
      );
    }
    // The window starts at `now` and is never shifted. A CA that is not valid
    // yet, or no longer valid, then fails checkCaConstraints.
    return [now, Math.min(now + request.lifetimeSeconds, ca.notAfter)];
  }
  if (!request.notBefore || !request.notAfter) {
    throw new RangeError(
      "Missing validity: pass notBefore and notAfter, or now and lifetimeSeconds",
    );
  }
  const window: [number, number] = [
    toSeconds(request.notBefore),
    toSeconds(request.notAfter),
  ];
  if (now !== undefined && window[0] > now) {
    throw outside(
      "The certificate would start after the signing time, and Nebula reports that as expired",
      "notBefore",
    );
  }
  return window;
}

/** Rejects strings that UTF-8 cannot carry unchanged (lone UTF-16 surrogates). */
function checkText(value: string, field: string): void {
  if (!value.isWellFormed()) {
    throw new InvalidInputError(
      `The ${field} contains an unpaired UTF-16 surrogate, which UTF-8 cannot encode`,
      [{ field, message: "must be valid Unicode text" }],
    );
  }
}

function outside(message: string, field: string): InvalidInputError {
  return new InvalidInputError(
    message,
    [{ field, message }],
  );
}

/** Throws unless `details` satisfies every constraint Nebula checks against `ca`. */
export function checkCaConstraints(
  ca: CertificateDetails,
  details: CertificateDetails,
): void {
  if (details.notBefore < ca.notBefore) {
    throw outside("The certificate would be valid before its CA", "notBefore");
  }
  if (details.notAfter > ca.notAfter) {
    throw outside("The certificate would expire after its CA", "notAfter");
  }
  if (details.notAfter <= details.notBefore) {
    throw outside("The certificate would end before it starts", "notAfter");
  }
  if (ca.groups.length > 0) {
    const missing = details.groups.find((group) => !ca.groups.includes(group));
    if (missing !== undefined) {
      throw outside(`The CA does not allow group ${missing}`, "groups");
    }
  }
  for (const net of details.ips) {
    const prefix = maskToPrefix(net.mask);
    if (prefix < 0) {
      throw outside("The certificate mask is not contiguous", "ip");
    }
    const inside = ca.ips.length === 0 ||
      ca.ips.some((caNet) =>
        ((net.ip & caNet.mask) >>> 0) === ((caNet.ip & caNet.mask) >>> 0) &&
        prefix >= maskToPrefix(caNet.mask)
      );
    if (!inside) {
      throw outside(
        `Address ${intToIp(net.ip)}/${prefix} is outside the CA's network`,
        "ip",
      );
    }
  }
}

/** Signs a host certificate for a device's X25519 public key. */
export async function signHostCertificate(
  request: HostCertificateRequest,
): Promise<SignedCertificate> {
  const caDetails = request.ca.certificate.details;
  if (request.publicKey.length !== 32) {
    throw new InvalidInputError("An X25519 public key is 32 bytes", [
      { field: "publicKey", message: "must be 32 bytes" },
    ], "invalid_public_key");
  }
  if (request.caPrivateKey.length !== 64) {
    throw new RangeError("A CA private key is 64 bytes");
  }
  if (request.prefixLength < 0 || request.prefixLength > 32) {
    throw new RangeError(`Invalid prefix length ${request.prefixLength}`);
  }
  checkText(request.name, "name");
  request.groups.forEach((group) => checkText(group, "groups"));
  const [notBefore, notAfter] = hostWindow(request, caDetails);

  const details: CertificateDetails = {
    name: request.name,
    ips: [{
      ip: ipToInt(request.ip),
      mask: prefixToMask(request.prefixLength),
    }],
    subnets: [],
    groups: request.groups,
    notBefore,
    notAfter,
    publicKey: request.publicKey,
    isCa: false,
    issuer: request.ca.fingerprint,
  };
  checkCaConstraints(caDetails, details);

  const detailsBytes = encodeDetails(details);
  const signature = await signEd25519(request.caPrivateKey, detailsBytes);
  return await finish({ details, signature }, detailsBytes);
}

/** Checks a certificate against its CA as Nebula does: issuer, times at `now`, signature, constraints. */
export async function verifyCertificate(
  certificate: Certificate,
  ca: SignedCertificate,
  now: Date,
): Promise<void> {
  const seconds = toSeconds(now);
  const { details } = certificate;
  if (details.issuer !== ca.fingerprint) {
    throw new RangeError("Certificate was not issued by this CA");
  }
  if (
    ca.certificate.details.notBefore > seconds ||
    ca.certificate.details.notAfter < seconds
  ) {
    throw new RangeError("The CA is expired");
  }
  if (details.notBefore > seconds || details.notAfter < seconds) {
    throw new RangeError("The certificate is expired");
  }
  const valid = await verifyEd25519(
    ca.certificate.details.publicKey,
    encodeDetails(details),
    certificate.signature,
  );
  if (!valid) throw new RangeError("Certificate signature did not match");
  checkCaConstraints(ca.certificate.details, details);
}
