/**
 * Overlay address allocation over the Db port. The SQL functions in the
 * migrations do the work under row locks and constraints; this module only
 * calls them and converts their rows.
 */
import type { Db } from "../db/port.ts";

export interface Allocation {
  /** Overlay address without prefix, e.g. `10.42.0.7`. */
  ip: string;
  /** Prefix length of the project's network, e.g. 24. */
  prefixLength: number;
}

export interface PoolUsage {
  total: number;
  allocated: number;
  quarantined: number;
  free: number;
}

export interface Release {
  /** Address the device held, or null when it had none. */
  ip: string | null;
  /** The address is not handed out again before this time. */
  quarantinedUntil: Date | null;
  /** Fingerprints of the certificates the release revoked. */
  revokedFingerprints: string[];
}

export interface DeviceAllocation extends Allocation {
  deviceId: string;
  isLighthouse: boolean;
  allocatedAt: Date | null;
}

/** Splits PostgreSQL's inet text form (`10.42.0.7/24`) into address and prefix. */
export function parseInet(value: string): Allocation {
  const [ip, prefix] = value.split("/");
  return { ip, prefixLength: prefix === undefined ? 32 : Number(prefix) };
}

/** Adds every usable address of `cidr` except `reserved` to the project's pool. */
export async function populatePool(
  db: Db,
  projectId: string,
  cidr: string,
  reserved: string[] = [],
): Promise<number> {
  const [row] = await db.query<{ added: number }>(
    "select public.populate_nebula_ip_pool($1, $2::cidr, $3::inet[]) as added",
    [projectId, cidr, reserved],
  );
  return Number(row.added);
}

/**
 * Returns the device's address, allocating the lowest free one when it has
 * none. The device row must exist. Throws PoolExhaustedError when the pool is full.
 */
export async function allocateIp(
  db: Db,
  request: { projectId: string; deviceId: string; allocatedBy: string | null },
  now: Date = new Date(),
): Promise<Allocation> {
  const [row] = await db.query<{ ip: string }>(
    "select public.allocate_nebula_ip($1, $2, $3, $4)::text as ip",
    [request.projectId, request.deviceId, request.allocatedBy, now],
  );
  return parseInet(row.ip);
}

/** Gives a device the reserved address of the lighthouse at `ip`. */
export async function assignLighthouseIp(
  db: Db,
  request: {
    projectId: string;
    deviceId: string;
    ip: string;
    allocatedBy: string | null;
  },
  now: Date = new Date(),
): Promise<Allocation> {
  const [row] = await db.query<{ ip: string }>(
    "select public.assign_nebula_lighthouse_ip($1, $2, $3::inet, $4, $5)::text as ip",
    [request.projectId, request.deviceId, request.ip, request.allocatedBy, now],
  );
  return parseInet(row.ip);
}

/**
 * Frees the device's address, revokes its unexpired certificates and keeps
 * the address out of the pool until they have all expired.
 */
export async function releaseDevice(
  db: Db,
  request: { projectId: string; deviceId: string; reason?: string },
  now: Date = new Date(),
): Promise<Release> {
  const [row] = await db.query<{
    ip: string | null;
    quarantined_until: Date | null;
    revoked_fingerprints: string[];
  }>(
    `select ip::text as ip, quarantined_until, revoked_fingerprints
     from public.release_nebula_ip_by_device($1, $2, $3, $4)`,
    [request.projectId, request.deviceId, now, request.reason ?? "released"],
  );
  return {
    ip: row.ip === null ? null : parseInet(row.ip).ip,
    quarantinedUntil: row.quarantined_until,
    revokedFingerprints: row.revoked_fingerprints,
  };
}

/** Counts the pool's rows by state at `now`. */
export async function getPoolUsage(
  db: Db,
  projectId: string,
  now: Date = new Date(),
): Promise<PoolUsage> {
  const [row] = await db.query<Record<keyof PoolUsage, string | number>>(
    "select * from public.get_nebula_ip_pool_usage($1, $2)",
    [projectId, now],
  );
  return {
    total: Number(row.total),
    allocated: Number(row.allocated),
    quarantined: Number(row.quarantined),
    free: Number(row.free),
  };
}

interface AllocationRow {
  device_id: string;
  ip: string | null;
  is_lighthouse: boolean;
  allocated_at: Date | null;
}

function toDeviceAllocation(row: AllocationRow): DeviceAllocation | null {
  if (row.ip === null) return null;
  return {
    deviceId: row.device_id,
    ...parseInet(row.ip),
    isLighthouse: row.is_lighthouse,
    allocatedAt: row.allocated_at,
  };
}

/** Returns the device's current allocation, or null when it has no address. */
export async function getDeviceAllocation(
  db: Db,
  projectId: string,
  deviceId: string,
): Promise<DeviceAllocation | null> {
  const rows = await db.query<AllocationRow>(
    `select device_id, ip::text as ip, is_lighthouse, allocated_at
     from public.get_nebula_device_allocation($1, $2)`,
    [projectId, deviceId],
  );
  return rows.length === 0 ? null : toDeviceAllocation(rows[0]);
}

/** Lists the project's current allocations in address order. */
export async function listAllocations(
  db: Db,
  projectId: string,
): Promise<DeviceAllocation[]> {
  const rows = await db.query<AllocationRow>(
    `select device_id, ip::text as ip, is_lighthouse, allocated_at
     from public.list_nebula_ip_allocations($1)`,
    [projectId],
  );
  return rows.map(toDeviceAllocation).filter((row) => row !== null);
}
