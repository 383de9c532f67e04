import type { Db } from "../db/port.ts";
import { sqlState } from "../db/errors.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { appendAuditEvent, type AuditContext } from "../audit/mod.ts";

const FINGERPRINT = /^[0-9a-fA-F]{64}$/;

/**
 * Revocation reasons the product writes itself, listed by
 * public.nebula_lifecycle_revocation_reasons(). Registration ignores
 * certificates revoked for these reasons, so a revoke request may not use them.
 */
export const LIFECYCLE_REVOCATION_REASONS: readonly string[] = [
  "key_changed",
  "released",
  "reclaimed",
];

export interface RevokedCertificate {
  fingerprint: string;
  deviceId: string;
  /** Revocation time, kept from an earlier revocation, so it may precede the request. */
  revokedAt: Date;
  notAfter: Date;
  /**
   * False when the certificate was revoked on request already; its first
   * revocation is kept. True when this request revoked it, or replaced a
   * lifecycle reason such as `key_changed`.
   */
  newlyRevoked: boolean;
  /**
   * Every certificate this request changed, sorted: the requested one when
   * `newlyRevoked`, and the certificates of the same public key that were
   * unrevoked, on any device of the project.
   */
  revokedFingerprints: string[];
}

interface RevokedRow {
  fingerprint: string;
  device_id: string;
  revoked_at: Date;
  not_after: Date;
  newly_revoked: boolean;
  /** Reason of the earlier revocation, or null when it was unrevoked. */
  previous_reason: string | null;
}

async function callRevoke(
  db: Db,
  projectId: string,
  fingerprint: string,
  reason: string,
  now: Date,
): Promise<RevokedRow[]> {
  try {
    return await db.query<RevokedRow>(
      `select fingerprint, device_id, revoked_at, not_after, newly_revoked,
         previous_reason
       from public.revoke_nebula_certificate($1, $2, $3, $4)`,
      [projectId, fingerprint, reason, now],
    );
  } catch (error) {
    if (sqlState(error) !== "VS121") throw error;
    throw new NotFoundError(
      `Certificate ${fingerprint} not found in project ${projectId}`,
      "not_found",
    );
  }
}

/** Audit state of a certificate before this request changed it. */
function stateBefore(row: RevokedRow) {
  return row.previous_reason === null
    ? { revokedAt: null }
    : { revokedAt: row.revoked_at, reason: row.previous_reason };
}

/**
 * Revokes one certificate on request (an admin revoke): its fingerprint
 * stays on the project's blocklist until the certificate expires, and its
 * public key cannot register again in the project. The other unrevoked
 * certificates of that key are revoked too, because the private key is what
 * is compromised. A certificate that the service revoked itself (a
 * lifecycle reason) takes the request's reason and keeps its revocation
 * time. Revoking on request twice changes nothing. Writes a
 * `certificate.revoke` audit row per changed certificate.
 */
export async function revokeCertificate(
  db: Db,
  input: { projectId: string; fingerprint: string; reason: string },
  audit: AuditContext,
  now: Date = new Date(),
): Promise<RevokedCertificate> {
  if (!FINGERPRINT.test(input.fingerprint)) {
    throw new InvalidInputError(
      `fingerprint must be 64 hex digits (SHA-256), got "${input.fingerprint}"`,
      [{ field: "fingerprint", message: "must be 64 hex digits" }],
    );
  }

  return await db.transaction(async (tx) => {
    const rows = await callRevoke(
      tx,
      input.projectId,
      input.fingerprint,
      input.reason,
      now,
    );
    // The SQL function returns the requested certificate first.
    const [requested] = rows;
    const changed = rows.filter((row) => row.newly_revoked);

    for (const row of changed) {
      await appendAuditEvent(tx, audit, {
        projectId: input.projectId,
        action: "certificate.revoke",
        targetType: "certificate",
        targetId: row.fingerprint,
        before: stateBefore(row),
        after: {
          revokedAt: row.revoked_at,
          reason: input.reason,
          deviceId: row.device_id,
          ...(row.fingerprint === requested.fingerprint
            ? {}
            : { sameKeyAs: requested.fingerprint }),
        },
      }, now);
    }

    return {
      fingerprint: requested.fingerprint,
      deviceId: requested.device_id,
      revokedAt: requested.revoked_at,
      notAfter: requested.not_after,
      newlyRevoked: requested.newly_revoked,
      revokedFingerprints: changed.map((row) => row.fingerprint).sort(),
    };
  });
}

/**
 * Revokes on request every certificate of a device, expired ones included,
 * without releasing its address, so the device cannot renew or register
 * again, and neither can its keys. Certificates that the service revoked
 * itself take the request's reason, and the unrevoked certificates of the
 * device's keys on other devices are revoked too. Returns the fingerprints
 * it changed, sorted, and writes a `device.revoke` audit row.
 */
export function revokeDeviceCertificates(
  db: Db,
  input: { projectId: string; deviceId: string; reason: string },
  audit: AuditContext,
  now: Date = new Date(),
): Promise<string[]> {
  return db.transaction(async (tx) => {
    let rows: Omit<RevokedRow, "newly_revoked">[];
    try {
      rows = await tx.query(
        `select fingerprint, device_id, revoked_at, not_after, previous_reason
         from public.revoke_nebula_device_certificates($1, $2, $3, $4)`,
        [input.projectId, input.deviceId, input.reason, now],
      );
    } catch (error) {
      if (sqlState(error) !== "VS122") throw error;
      throw new NotFoundError(
        `Device ${input.deviceId} not found in project ${input.projectId}`,
        "device_not_found",
      );
    }
    const revoked = rows.map((row) => row.fingerprint).sort();

    await appendAuditEvent(tx, audit, {
      projectId: input.projectId,
      action: "device.revoke",
      targetType: "device",
      targetId: input.deviceId,
      after: {
        reason: input.reason,
        revokedFingerprints: revoked,
        replacedReasons: Object.fromEntries(
          rows.filter((row) => row.previous_reason !== null)
            .map((row) => [row.fingerprint, row.previous_reason]),
        ),
      },
    }, now);

    return revoked;
  });
}

/** Returns the project's pki.blocklist at `now`: revoked, unexpired certificates, lowercase hex, sorted. */
export async function getBlocklist(
  db: Db,
  projectId: string,
  now: Date = new Date(),
): Promise<string[]> {
  const rows = await db.query<{ fingerprint: string }>(
    "select fingerprint from public.get_nebula_blocklist($1, $2) as fingerprint",
    [projectId, now],
  );

  return rows.map((row) => row.fingerprint);
}
