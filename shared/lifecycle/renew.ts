import type { Db } from "../db/port.ts";
import {
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
} from "../errors.ts";
import { appendAuditEvent, type AuditContext } from "../audit/mod.ts";
import { loadProjectCas } from "./cas.ts";
import { bytesEqual } from "./bytes.ts";
import type {
  HostCertificateSigner,
  ProjectCa,
  SignedHostCertificate,
} from "./types.ts";
import { hostCertificateValidity } from "./validity.ts";

export interface RenewalInput {
  projectId: string;
  deviceId: string;
  /** User making the request; only the device's owner may renew it. */
  actorId: string;
  /** New raw 32-byte X25519 public key; omit to re-sign the current key. */
  publicKey?: Uint8Array;
}

/** Same shape as a registration result, plus what the renewal revoked. */
export interface RenewalResult {
  projectId: string;
  deviceId: string;
  deviceName: string;
  ip: string;
  prefixLength: number;
  isLighthouse: boolean;
  certificate: {
    fingerprint: string;
    notBefore: Date;
    notAfter: Date;
    pem: string;
  };
  caFingerprints: string[];
  /** Every unexpired CA certificate of the project, for the bundle's ca.crt. */
  caPems: string[];
  previousFingerprint: string;
  publicKeyChanged: boolean;
  /** Certificates revoked because the key changed; empty otherwise. */
  revokedFingerprints: string[];
}

interface DeviceRow {
  owner_id: string;
  name: string;
  host: string | null;
  prefix_length: number;
  is_lighthouse: boolean;
  lifetime_seconds: number;
}

interface CertificateRow {
  fingerprint: string;
  public_key: Uint8Array;
  groups: string[];
  not_after: Date;
  revoked_at: Date | null;
}

async function lockDevice(db: Db, input: RenewalInput): Promise<DeviceRow> {
  // The row lock serializes renewals, releases and reclaim of one device.
  const rows = await db.query<DeviceRow>(
    `select d.owner_id, d.name, host(d.nebula_ip) as host,
       masklen(p.cidr) as prefix_length, d.is_lighthouse,
       extract(epoch from p.host_cert_lifetime)::float8 as lifetime_seconds
     from public.user_devices d
     join public.projects p on p.id = d.project_id
     where d.project_id = $1 and d.id = $2
     for update of d`,
    [input.projectId, input.deviceId],
  );

  const device = rows[0];
  if (!device) {
    throw new NotFoundError(
      `Device ${input.deviceId} not found in project ${input.projectId}; register it first`,
      "device_not_found",
    );
  }
  if (device.owner_id !== input.actorId) {
    throw new ConflictError(
      `Device ${input.deviceId} belongs to another user; only its owner may renew it`,
      "device_owned_by_other_user",
    );
  }
  if (device.host === null) {
    throw new NotFoundError(
      `Device ${input.deviceId} has no address (it was released or reclaimed); register it again`,
      "device_not_found",
    );
  }
  return device;
}

async function latestCertificate(
  db: Db,
  input: RenewalInput,
): Promise<CertificateRow> {
  const rows = await db.query<CertificateRow>(
    `select fingerprint, public_key, groups, not_after, revoked_at
     from public.nebula_certificates
     where project_id = $1 and device_id = $2
     order by not_before desc, created_at desc
     limit 1`,
    [input.projectId, input.deviceId],
  );

  const certificate = rows[0];
  if (!certificate) {
    throw new NotFoundError(
      `Device ${input.deviceId} has no certificate to renew; register it again`,
      "device_not_found",
    );
  }
  // A revoked device must not be able to let itself back in by renewing.
  if (certificate.revoked_at !== null) {
    throw new ForbiddenError(
      `The certificate ${certificate.fingerprint} of device ${input.deviceId} is revoked; ask a project admin`,
      "certificate_revoked",
    );
  }
  return certificate;
}

async function assertKeyUnused(
  db: Db,
  input: RenewalInput,
  key: Uint8Array,
  now: Date,
) {
  const rows = await db.query(
    `select 1 from public.user_devices
     where project_id = $1 and id <> $2 and public_key = $3::bytea
     union all
     select 1 from public.nebula_certificates
     where project_id = $1 and device_id <> $2 and public_key = $3::bytea
       and revoked_at is null and not_after > $4
     limit 1`,
    [input.projectId, input.deviceId, key, now],
  );

  if (rows.length > 0) {
    throw new ConflictError(
      "publicKey is already used by another device of this project; generate a new key pair",
      "public_key_in_use",
    );
  }
}

/**
 * Rejects a key that has a certificate revoked through nebula-revoke in the
 * project, on this device or another, as registration does.
 */
async function assertKeyNotRevoked(
  db: Db,
  input: RenewalInput,
  key: Uint8Array,
) {
  const [revoked] = await db.query<{ revoked: boolean }>(
    "select public.is_nebula_public_key_revoked($1, $2::bytea) as revoked",
    [input.projectId, key],
  );
  if (revoked.revoked) {
    throw new ForbiddenError(
      "A certificate for publicKey was revoked in this project, so the key may not join it again; generate a new key pair",
      "certificate_revoked",
    );
  }
}

function signingCa(cas: ProjectCa[], now: Date): ProjectCa {
  // The CA that stays valid longest, so the certificate can last longest.
  const usable = cas.filter((ca) => ca.notBefore <= now && ca.notAfter > now);
  if (usable.length === 0) {
    throw new ConflictError(
      "The project has no valid CA to sign with; rotate the project's CA",
      "ca_expired",
    );
  }
  return usable[0];
}

function checkPublicKey(publicKey: Uint8Array | undefined): void {
  if (publicKey === undefined || publicKey.length === 32) return;

  throw new InvalidInputError(
    `publicKey must be a 32-byte X25519 key, got ${publicKey.length} bytes; create one with nebula-cert keygen`,
    [{ field: "publicKey", message: "must be a 32-byte X25519 public key" }],
    "invalid_public_key",
  );
}

async function revokeOtherCertificates(
  db: Db,
  input: RenewalInput,
  keep: string,
  now: Date,
): Promise<string[]> {
  const rows = await db.query<{ fingerprint: string }>(
    `update public.nebula_certificates
     set revoked_at = $3, revocation_reason = 'key_changed'
     where project_id = $1 and device_id = $2 and fingerprint <> $4
       and revoked_at is null and not_after > $3
     returning fingerprint`,
    [input.projectId, input.deviceId, now, keep],
  );

  return rows.map((row) => row.fingerprint).sort();
}

interface Issued {
  device: DeviceRow;
  previous: CertificateRow;
  ca: ProjectCa;
  publicKey: Uint8Array;
  signed: SignedHostCertificate;
}

async function signForDevice(
  tx: Db,
  sign: HostCertificateSigner,
  input: RenewalInput,
  cas: ProjectCa[],
  now: Date,
): Promise<Issued> {
  const device = await lockDevice(tx, input);
  const previous = await latestCertificate(tx, input);
  const publicKey = input.publicKey ?? previous.public_key;
  await assertKeyNotRevoked(tx, input, publicKey);
  if (!bytesEqual(publicKey, previous.public_key)) {
    await assertKeyUnused(tx, input, publicKey, now);
  }

  const ca = signingCa(cas, now);
  const validity = hostCertificateValidity(now, device.lifetime_seconds, ca);
  if (!validity) {
    throw new ConflictError(
      "The project's CA has no validity left to give; rotate the project's CA",
      "ca_expired",
    );
  }

  const signed = await sign({
    projectId: input.projectId,
    ca,
    name: device.name,
    ip: device.host!,
    prefixLength: device.prefix_length,
    groups: previous.groups,
    publicKey,
    ...validity,
  });
  return { device, previous, ca, publicKey, signed };
}

async function storeCertificate(
  tx: Db,
  input: RenewalInput,
  issued: Issued,
  now: Date,
) {
  const { device, previous, ca, publicKey, signed } = issued;

  // Ed25519 signing is deterministic: a second renewal within the same
  // second yields the very same certificate, which is then already stored.
  await tx.query(
    `insert into public.nebula_certificates (fingerprint, project_id, device_id,
       ca_fingerprint, ip, name, groups, public_key, not_before, not_after)
     values ($1, $2, $3, $4, $5::inet, $6, $7::text[], $8::bytea, $9, $10)
     on conflict (fingerprint) do nothing`,
    [
      signed.fingerprint,
      input.projectId,
      input.deviceId,
      ca.fingerprint,
      `${device.host}/${device.prefix_length}`,
      device.name,
      previous.groups,
      publicKey,
      signed.notBefore,
      signed.notAfter,
    ],
  );
  await tx.query(
    `update public.user_devices set public_key = $3::bytea, updated_at = $4
     where project_id = $1 and id = $2`,
    [input.projectId, input.deviceId, publicKey, now],
  );
}

function renewalResult(
  input: RenewalInput,
  issued: Issued,
  cas: ProjectCa[],
  revoked: string[],
): RenewalResult {
  const { device, previous, signed } = issued;

  return {
    projectId: input.projectId,
    deviceId: input.deviceId,
    deviceName: device.name,
    ip: device.host!,
    prefixLength: device.prefix_length,
    isLighthouse: device.is_lighthouse,
    certificate: {
      fingerprint: signed.fingerprint,
      notBefore: signed.notBefore,
      notAfter: signed.notAfter,
      pem: signed.pem,
    },
    caFingerprints: cas.map((entry) => entry.fingerprint),
    caPems: cas.map((entry) => entry.certPem),
    previousFingerprint: previous.fingerprint,
    publicKeyChanged: !bytesEqual(issued.publicKey, previous.public_key),
    revokedFingerprints: revoked,
  };
}

/**
 * Re-signs a device's certificate for the same address, optionally for a new
 * public key. A key change revokes every other unexpired certificate of the
 * device, so its fingerprints go on the blocklist until they expire. The
 * lifetime is the project's host_cert_lifetime, capped by the CA's NotAfter.
 * Writes a `device.renew` audit row in the same transaction.
 */
export async function renewDeviceCertificate(
  db: Db,
  sign: HostCertificateSigner,
  input: RenewalInput,
  audit: AuditContext,
  now: Date = new Date(),
): Promise<RenewalResult> {
  checkPublicKey(input.publicKey);

  return await db.transaction(async (tx) => {
    const cas = await loadProjectCas(tx, input.projectId, now);
    const issued = await signForDevice(tx, sign, input, cas, now);
    await storeCertificate(tx, input, issued, now);
    const result = renewalResult(input, issued, cas, []);
    if (result.publicKeyChanged) {
      result.revokedFingerprints = await revokeOtherCertificates(
        tx,
        input,
        issued.signed.fingerprint,
        now,
      );
    }

    await appendAuditEvent(tx, audit, {
      projectId: input.projectId,
      action: "device.renew",
      targetType: "device",
      targetId: input.deviceId,
      before: {
        fingerprint: issued.previous.fingerprint,
        notAfter: issued.previous.not_after,
      },
      after: {
        fingerprint: result.certificate.fingerprint,
        notBefore: result.certificate.notBefore,
        notAfter: result.certificate.notAfter,
        publicKeyChanged: result.publicKeyChanged,
        revokedFingerprints: result.revokedFingerprints,
      },
    }, now);

    return result;
  });
}
