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

const PROJECT_COLUMNS =
  `p.id, p.name, p.cidr::text as cidr, host(p.cidr) as network,
  masklen(p.cidr) as prefix_length,
  extract(epoch from p.host_cert_lifetime)::float8 as host_cert_lifetime_seconds,
  extract(epoch from p.ca_lifetime)::float8 as ca_lifetime_seconds, p.created_at`;

function projectNotFound(projectId: string): NotFoundError {
  return new NotFoundError(
    `Project ${projectId} not found`,
    "project_not_found",
  );
}

export async function loadProject(
  db: Db,
  projectId: string,
): Promise<ProjectRow> {
  const rows = await db.query<ProjectRow>(
    `select ${PROJECT_COLUMNS} from public.projects p where p.id = $1`,
    [projectId],
  );
  if (rows.length === 0) throw projectNotFound(projectId);
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
  // One round trip for the project and the caller's membership.
  const rows = await db.query<ProjectRow & { role: Role | null }>(
    `select ${PROJECT_COLUMNS}, m.role
     from public.projects p
     left join public.project_members m on m.project_id = p.id and m.user_id = $2
     where p.id = $1`,
    [projectId, userId],
  );
  if (rows.length === 0) throw projectNotFound(projectId);
  const { role, ...project } = rows[0];
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
