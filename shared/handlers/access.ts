/** Project membership and role checks; functions connect as the owner, so RLS does not apply. */
import type { Db } from "../db/port.ts";
import { ForbiddenError, NotFoundError } from "../errors.ts";

export type Role = "owner" | "admin" | "member";

export interface ProjectRow {
  id: string;
  name: string;
  cidr: string;
  network: string;
  prefix_length: number;
  host_cert_lifetime_seconds: number;
  ca_lifetime_seconds: number;
  created_at: Date;
}

export async function loadProject(
  db: Db,
  projectId: string,
): Promise<ProjectRow> {
  const rows = await db.query<ProjectRow>(
    `select id, name, cidr::text as cidr, host(cidr) as network, masklen(cidr) as prefix_length,
       extract(epoch from host_cert_lifetime)::float8 as host_cert_lifetime_seconds,
       extract(epoch from ca_lifetime)::float8 as ca_lifetime_seconds, created_at
     from public.projects where id = $1`,
    [projectId],
  );
  if (rows.length === 0) {
    throw new NotFoundError(
      `Project ${projectId} not found`,
      "project_not_found",
    );
  }
  return rows[0];
}

/** Returns the caller's role in the project, or null when they are not a member. */
export async function memberRole(
  db: Db,
  projectId: string,
  userId: string,
): Promise<Role | null> {
  const rows = await db.query<{ role: Role }>(
    "select role from public.project_members where project_id = $1 and user_id = $2",
    [projectId, userId],
  );
  return rows[0]?.role ?? null;
}

/** Loads the project and checks that the caller has one of `roles`. */
export async function requireRole(
  db: Db,
  projectId: string,
  userId: string,
  roles: Role[],
): Promise<{ project: ProjectRow; role: Role }> {
  const project = await loadProject(db, projectId);
  const role = await memberRole(db, projectId, userId);
  if (!role) {
    throw new ForbiddenError(`You are not a member of project ${projectId}`);
  }
  if (!roles.includes(role)) {
    throw new ForbiddenError(
      `This needs the ${
        roles.join(" or ")
      } role in the project; you are ${role}`,
    );
  }
  return { project, role };
}

export const ANY_ROLE: Role[] = ["owner", "admin", "member"];
export const MANAGERS: Role[] = ["owner", "admin"];
