/** Users, projects and devices for allocator tests, written with plain SQL. */
import type { Db } from "../../shared/db/port.ts";
import { populatePool } from "../../shared/allocator/mod.ts";

export async function createUser(db: Db, email?: string): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    "insert into auth.users (email) values ($1) returning id",
    [email ?? `${crypto.randomUUID()}@example.test`],
  );
  return row.id;
}

export interface PoolProject {
  projectId: string;
  ownerId: string;
}

/** Creates a project with `cidr`, its owner, lighthouses on `lighthouses`, and its pool. */
export async function createPoolProject(
  db: Db,
  cidr: string,
  lighthouses: string[] = [],
): Promise<PoolProject> {
  const ownerId = await createUser(db);
  const [project] = await db.query<{ id: string }>(
    "insert into public.projects (name, cidr, created_by) values ($1, $2, $3) returning id",
    ["allocator test", cidr, ownerId],
  );
  await db.query(
    "insert into public.project_members (project_id, user_id, role) values ($1, $2, 'owner')",
    [project.id, ownerId],
  );
  for (const ip of lighthouses) {
    const prefix = cidr.split("/")[1];
    await db.query(
      "insert into public.nebula_lighthouses (project_id, ip, endpoints) values ($1, $2, $3)",
      [project.id, `${ip}/${prefix}`, [`192.0.2.10:4242`]],
    );
  }
  await populatePool(db, project.id, cidr, lighthouses);
  return { projectId: project.id, ownerId };
}

/** Inserts `count` device rows owned by `ownerId`; returns their ids. */
export async function createDevices(
  db: Db,
  project: PoolProject,
  count: number,
): Promise<string[]> {
  const rows = await db.query<{ id: string }>(
    `insert into public.user_devices (project_id, id, owner_id, name)
     select $1, gen_random_uuid(), $2, 'device ' || g
     from generate_series(1, $3::int) g
     returning id`,
    [project.projectId, project.ownerId, count],
  );
  return rows.map((row) => row.id);
}

/** Records a certificate for `ip` valid until `notAfter`, signed by a placeholder CA row. */
export async function recordCertificate(
  db: Db,
  project: PoolProject,
  deviceId: string,
  ip: string,
  notBefore: Date,
  notAfter: Date,
): Promise<string> {
  const caFingerprint = await ensureCaRow(db, project.projectId);
  const fingerprint = randomHex(32);
  const [{ prefix }] = await db.query<{ prefix: number }>(
    "select masklen(cidr) as prefix from public.projects where id = $1",
    [project.projectId],
  );
  await db.query(
    `insert into public.nebula_certificates
       (fingerprint, project_id, device_id, ca_fingerprint, ip, name, public_key, not_before, not_after)
     values ($1, $2, $3, $4, $5, 'device', $6, $7, $8)`,
    [
      fingerprint,
      project.projectId,
      deviceId,
      caFingerprint,
      `${ip}/${prefix}`,
      crypto.getRandomValues(new Uint8Array(32)),
      notBefore,
      notAfter,
    ],
  );
  return fingerprint;
}

// The allocator only reads certificate validity, so the CA row needs no real
// key material here; PKI tests cover real CAs.
async function ensureCaRow(db: Db, projectId: string): Promise<string> {
  const existing = await db.query<{ fingerprint: string }>(
    "select fingerprint from public.nebula_cas where project_id = $1",
    [projectId],
  );
  if (existing.length > 0) return existing[0].fingerprint;

  const fingerprint = randomHex(32);
  await db.query(
    `insert into public.nebula_cas
       (project_id, cert_pem, fingerprint, not_before, not_after, encrypted_private_key, key_nonce)
     values ($1, 'placeholder', $2, now() - interval '1 day', now() + interval '10 years', $3, $4)`,
    [projectId, fingerprint, new Uint8Array(80), new Uint8Array(12)],
  );
  return fingerprint;
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)))
    .map((byte) => byte.toString(16).padStart(2, "0"))
    .join("");
}
