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
  revokedAt: Date;
  notAfter: Date;
  /** False when the certificate was revoked already; its first revocation is kept. */
  newlyRevoked: boolean;
}

interface RevokedRow {
  fingerprint: string;
  device_id: string;
  revoked_at: Date;
  not_after: Date;
  newly_revoked: boolean;
}

async function callRevoke(
  db: Db,
  projectId: string,
  fingerprint: string,
  reason: string,
  now: Date,
): Promise<RevokedRow> {
  try {
    const rows = await db.query<RevokedRow>(
      `select fingerprint, device_id, revoked_at, not_after, newly_revoked
       from public.revoke_nebula_certificate($1, $2, $3, $4)`,
      [projectId, fingerprint, reason, now],
    );
    return rows[0];
  } catch (error) {
    if (sqlState(error) !== "VS121") throw error;
    throw new NotFoundError(
      `Certificate ${fingerprint} not found in project ${projectId}`,
      "not_found",
    );
  }
}

/**
 * Revokes one certificate (an admin revoke): its fingerprint stays on the
 * project's blocklist until the certificate expires. Revoking twice changes
 * nothing. Writes a `certificate.revoke` audit row.
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
    const row = await callRevoke(
      tx,
      input.projectId,
      input.fingerprint,
      input.reason,
      now,
    );

    if (row.newly_revoked) {
      await appendAuditEvent(tx, audit, {
        projectId: input.projectId,
        action: "certificate.revoke",
        targetType: "certificate",
        targetId: row.fingerprint,
        before: { revokedAt: null },
        after: {
          revokedAt: row.revoked_at,
          reason: input.reason,
          deviceId: row.device_id,
        },
      }, now);
    }

    return {
      fingerprint: row.fingerprint,
      deviceId: row.device_id,
      revokedAt: row.revoked_at,
      notAfter: row.not_after,
      newlyRevoked: row.newly_revoked,
    };
  });
}

/**
 * Revokes every unexpired certificate of a device without releasing its
 * address; the device cannot renew afterwards. Returns the fingerprints it
 * revoked and writes a `device.revoke` audit row.
 */
export function revokeDeviceCertificates(
  db: Db,
  input: { projectId: string; deviceId: string; reason: string },
  audit: AuditContext,
  now: Date = new Date(),
): Promise<string[]> {
  return db.transaction(async (tx) => {
    const devices = await tx.query(
      "select 1 from public.user_devices where project_id = $1 and id = $2 for update",
      [input.projectId, input.deviceId],
    );
    if (devices.length === 0) {
      throw new NotFoundError(
        `Device ${input.deviceId} not found in project ${input.projectId}`,
        "device_not_found",
      );
    }

    const rows = await tx.query<{ fingerprint: string }>(
      `update public.nebula_certificates
       set revoked_at = $3, revocation_reason = $4
       where project_id = $1 and device_id = $2
         and revoked_at is null and not_after > $3
       returning fingerprint`,
      [input.projectId, input.deviceId, now, input.reason],
    );
    const revoked = rows.map((row) => row.fingerprint).sort();

    await appendAuditEvent(tx, audit, {
      projectId: input.projectId,
      action: "device.revoke",
      targetType: "device",
      targetId: input.deviceId,
      after: { reason: input.reason, revokedFingerprints: revoked },
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
