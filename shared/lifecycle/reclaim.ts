import type { Db } from "../db/port.ts";

/** One device that reclaim released. */
export interface ReclaimedDevice {
  projectId: string;
  deviceId: string;
  /** Address it held, with the pool prefix. */
  ip: string;
  lastActivity: Date;
  /** The address returns to the pool at this time, when its last certificate expires; null if none was valid. */
  quarantinedUntil: Date | null;
  revokedFingerprints: string[];
}

interface ReclaimRow {
  project_id: string;
  device_id: string;
  ip: string;
  last_activity: Date;
  quarantined_until: Date | null;
  revoked_fingerprints: string[];
}

/**
 * Releases every non-lighthouse device idle longer than its project's
 * device_idle_timeout (public.reclaim_idle_devices): revokes its
 * certificates, quarantines its address until they expire and writes a
 * `device.reclaim` audit row, all in one transaction.
 */
export async function reclaimIdleDevices(
  db: Db,
  now: Date = new Date(),
): Promise<ReclaimedDevice[]> {
  const rows = await db.query<ReclaimRow>(
    `select project_id, device_id, ip::text as ip, last_activity,
       quarantined_until, revoked_fingerprints
     from public.reclaim_idle_devices($1)`,
    [now],
  );

  return rows.map((row) => ({
    projectId: row.project_id,
    deviceId: row.device_id,
    ip: row.ip,
    lastActivity: row.last_activity,
    quarantinedUntil: row.quarantined_until,
    revokedFingerprints: row.revoked_fingerprints,
  }));
}

async function sha256(text: string): Promise<Uint8Array> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(text),
  );
  return new Uint8Array(digest);
}

/**
 * Checks the secret that lets a scheduler call the reclaim function. Both
 * sides are hashed first so the comparison takes the same time whatever the
 * input. An unset or empty expected secret matches nothing.
 */
export async function reclaimSecretMatches(
  presented: string | null | undefined,
  expected: string | null | undefined,
): Promise<boolean> {
  if (!expected || !presented) return false;

  const [a, b] = await Promise.all([sha256(presented), sha256(expected)]);
  let difference = 0;
  for (let index = 0; index < a.length; index++) {
    difference |= a[index] ^ b[index];
  }

  return difference === 0;
}
