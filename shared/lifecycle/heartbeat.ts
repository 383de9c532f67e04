import type { Db } from "../db/port.ts";

/**
 * Records that a device is alive (user_devices.nebula_last_seen), which keeps
 * reclaim away from it. Never moves the time back. Throws the typed
 * `device_not_found` error for an unknown device.
 */
export async function recordHeartbeat(
  db: Db,
  projectId: string,
  deviceId: string,
  now: Date = new Date(),
): Promise<Date> {
  const rows = await db.query<{ last_seen: Date }>(
    "select public.record_device_heartbeat($1, $2, $3) as last_seen",
    [projectId, deviceId, now],
  );

  return rows[0].last_seen;
}
