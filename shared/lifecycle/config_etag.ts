import type { Db } from "../db/port.ts";
import { NotFoundError } from "../errors.ts";
import { loadProjectCas } from "./cas.ts";
import type { ProjectCa } from "./types.ts";
import { getBlocklist } from "./revoke.ts";

/** Everything a device's nebula.yml is generated from; the ETag is a hash of it. */
export interface ConfigInputs {
  /** Version of the config generator, so a generator change changes every ETag. */
  generatorVersion: string;
  projectId: string;
  cidr: string;
  deviceId: string;
  deviceName: string;
  ip: string;
  prefixLength: number;
  isLighthouse: boolean;
  /** Latest certificate of the device, null when it has none. */
  certificateFingerprint: string | null;
  caFingerprints: string[];
  lighthouses: { ip: string; endpoints: string[]; name: string }[];
  blocklist: string[];
}

interface DeviceRow {
  name: string;
  host: string | null;
  cidr: string;
  prefix_length: number;
  is_lighthouse: boolean;
  fingerprint: string | null;
}

interface LighthouseRow {
  host: string;
  endpoints: string[];
  name: string;
}

async function loadDevice(
  db: Db,
  projectId: string,
  deviceId: string,
): Promise<DeviceRow> {
  const rows = await db.query<DeviceRow>(
    `select d.name, host(d.nebula_ip) as host, p.cidr::text as cidr,
       masklen(p.cidr) as prefix_length, d.is_lighthouse,
       (select c.fingerprint from public.nebula_certificates c
        where c.project_id = d.project_id and c.device_id = d.id
        order by c.not_before desc, c.created_at desc limit 1) as fingerprint
     from public.user_devices d
     join public.projects p on p.id = d.project_id
     where d.project_id = $1 and d.id = $2`,
    [projectId, deviceId],
  );

  const device = rows[0];
  if (!device || device.host === null) {
    throw new NotFoundError(
      `Device ${deviceId} has no address in project ${projectId}; register it first`,
      "device_not_found",
    );
  }
  return device;
}

/** Reads the inputs of a device's config at `now` from the database. */
export async function loadConfigInputs(
  db: Db,
  projectId: string,
  deviceId: string,
  generatorVersion: string,
  now: Date = new Date(),
  loadedCas?: ProjectCa[],
): Promise<ConfigInputs> {
  const device = await loadDevice(db, projectId, deviceId);
  const lighthouses = await db.query<LighthouseRow>(
    `select host(ip) as host, endpoints, name from public.nebula_lighthouses
     where project_id = $1 order by ip`,
    [projectId],
  );
  const cas = loadedCas ?? await loadProjectCas(db, projectId, now);
  const blocklist = await getBlocklist(db, projectId, now);

  return {
    generatorVersion,
    projectId,
    cidr: device.cidr,
    deviceId,
    deviceName: device.name,
    ip: device.host!,
    prefixLength: device.prefix_length,
    isLighthouse: device.is_lighthouse,
    certificateFingerprint: device.fingerprint,
    caFingerprints: cas.map((ca) => ca.fingerprint).sort(),
    lighthouses: lighthouses.map((row) => ({
      ip: row.host,
      endpoints: row.endpoints,
      name: row.name,
    })),
    blocklist,
  };
}

function compareCodeUnits(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

/** JSON with object keys sorted at every level, so equal inputs give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, entry]) => entry !== undefined)
      .sort(([a], [b]) => compareCodeUnits(a, b));
    return `{${
      entries.map(([key, entry]) =>
        `${JSON.stringify(key)}:${canonicalJson(entry)}`
      ).join(",")
    }}`;
  }
  return JSON.stringify(value);
}

function base64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(
    /=+$/,
    "",
  );
}

/** Returns a strong ETag (quoted) for the config built from `inputs`: base64url SHA-256 of their canonical JSON. */
export async function configEtag(inputs: ConfigInputs): Promise<string> {
  const text = new TextEncoder().encode(canonicalJson(inputs));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", text));

  return `"${base64Url(digest)}"`;
}

/**
 * Tells whether an If-None-Match header matches `etag`, so the response is
 * 304. If-None-Match uses the weak comparison (RFC 9110, section 13.1.2):
 * `W/` prefixes are ignored, `*` matches any current config.
 */
export function etagMatches(
  ifNoneMatch: string | null | undefined,
  etag: string,
): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === "*") return true;

  const opaque = (tag: string) => tag.trim().replace(/^W\//, "");
  const wanted = opaque(etag);

  return ifNoneMatch.split(",").some((tag) => opaque(tag) === wanted);
}
