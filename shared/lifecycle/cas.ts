import type { Db } from "../db/port.ts";
import type { ProjectCa } from "./types.ts";

interface CaRow {
  id: string;
  fingerprint: string;
  cert_pem: string;
  not_before: Date;
  not_after: Date;
}

/**
 * Returns the project's CAs that are not retired and not expired at `now`,
 * longest-lived first. The sealed private key is never selected.
 */
export async function loadProjectCas(
  db: Db,
  projectId: string,
  now: Date,
): Promise<ProjectCa[]> {
  const rows = await db.query<CaRow>(
    `select id, fingerprint, cert_pem, not_before, not_after
     from public.nebula_cas
     where project_id = $1 and retired_at is null and not_after > $2
     order by not_after desc, fingerprint`,
    [projectId, now],
  );

  return rows.map((row) => ({
    id: row.id,
    fingerprint: row.fingerprint,
    certPem: row.cert_pem,
    notBefore: row.not_before,
    notAfter: row.not_after,
  }));
}
