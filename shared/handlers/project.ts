/**
 * `nebula-project`: sets a project's network up (CA, pool, lighthouses),
 * reads it back with pool usage, changes lighthouses and members.
 */
import { z } from "zod";
import { appendAuditEvent } from "../audit/mod.ts";
import { getPoolUsage, populatePool } from "../allocator/mod.ts";
import type { Db } from "../db/port.ts";
import {
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
} from "../errors.ts";
import { json, type RequestContext, type Route } from "../http/serve.ts";
import {
  displayText,
  parseInput,
  readJsonBody,
  uuid,
} from "../http/request.ts";
import { loadProjectCas } from "../lifecycle/cas.ts";
import { ipToInt, prefixToMask } from "../pki/cert.ts";
import { createCa } from "../pki/ca.ts";
import { sealCaKey } from "../pki/key_encryption.ts";
import {
  ConfigInputError,
  endpointPort,
  parseEndpoint,
} from "../config/nebula_yml.ts";
import { ANY_ROLE, loadProject, MANAGERS, requireRole } from "./access.ts";
import { auditContext } from "./audit_context.ts";
import type { HandlerDeps } from "./deps.ts";

const HOUR = 3600;
const DAY = 86400;

const Endpoint = z.string().max(300).superRefine((value, issue) => {
  try {
    parseEndpoint(value);
  } catch (error) {
    issue.addIssue({
      code: "custom",
      message: error instanceof ConfigInputError
        ? error.message
        : "must be host:port",
    });
  }
});

const Lighthouse = z.strictObject({
  ip: z.ipv4("must be an IPv4 overlay address inside the project's network"),
  endpoints: z.array(Endpoint).min(
    1,
    "a lighthouse needs at least one public host:port endpoint",
  ).max(8),
  name: displayText(100).optional(),
}).superRefine((lighthouse, issue) => {
  // The lighthouse's nebula.yml listens on the one port of its endpoints.
  try {
    endpointPort(lighthouse.ip, lighthouse.endpoints);
  } catch (error) {
    if (!(error instanceof ConfigInputError)) throw error;
    issue.addIssue({
      code: "custom",
      path: ["endpoints"],
      message: error.message,
    });
  }
});

/**
 * Shortest prefix a project may request. The pool has one row per address
 * and is filled in the request that sets the project up. A /8 (16.7 million
 * rows) would tie up a connection and gigabytes of disk, while a /16 takes
 * about half a second.
 */
const MIN_PROJECT_PREFIX = 16;

const Cidr = z.string().regex(
  /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/,
  "must be an IPv4 prefix such as 10.42.0.0/24",
)
  .superRefine((value, issue) => {
    const [ip, length] = value.split("/");
    const prefixLength = Number(length);
    try {
      const address = ipToInt(ip);
      if (prefixLength < MIN_PROJECT_PREFIX || prefixLength > 30) {
        issue.addIssue({
          code: "custom",
          message:
            `prefix length must be ${MIN_PROJECT_PREFIX} to 30 (at most 65,534 addresses per project)`,
        });
      } else if (((address & prefixToMask(prefixLength)) >>> 0) !== address) {
        issue.addIssue({
          code: "custom",
          message: "host bits must be zero (use the network address)",
        });
      }
    } catch {
      issue.addIssue({
        code: "custom",
        message: "must be an IPv4 prefix such as 10.42.0.0/24",
      });
    }
  });

const CreateBody = z.strictObject({
  name: displayText(200),
  cidr: Cidr,
  lighthouses: z.array(Lighthouse).min(
    1,
    "a project needs at least one lighthouse",
  ).max(16),
  hostCertLifetimeHours: z.number().int().min(1).max(24 * 3650).optional(),
  caLifetimeDays: z.number().int().min(1).max(3650 * 3).optional(),
});

const PatchBody = z.strictObject({
  lighthouses: z.array(Lighthouse).min(1).max(16),
});
const MemberBody = z.strictObject({
  userId: uuid,
  role: z.enum(["owner", "admin", "member"]),
});

type LighthouseInput = z.infer<typeof Lighthouse>;

/** Overlay addresses must be usable hosts of the network: not the network or broadcast address. */
function checkLighthouses(cidr: string, lighthouses: LighthouseInput[]): void {
  const [network, length] = cidr.split("/");
  const mask = prefixToMask(Number(length));
  const base = ipToInt(network);
  const broadcast = (base | (~mask >>> 0)) >>> 0;
  const issues: { field: string; message: string }[] = [];
  const seen = new Set<string>();
  lighthouses.forEach((lighthouse, index) => {
    const address = ipToInt(lighthouse.ip);
    const field = `lighthouses.${index}.ip`;
    if (((address & mask) >>> 0) !== base) {
      issues.push({
        field,
        message:
          `must be an overlay address inside ${cidr}, not a public address; put public addresses in endpoints`,
      });
    } else if (address === base || address === broadcast) {
      issues.push({
        field,
        message: "must not be the network or broadcast address",
      });
    } else if (seen.has(lighthouse.ip)) {
      issues.push({ field, message: "is listed twice" });
    }
    seen.add(lighthouse.ip);
  });
  if (issues.length > 0) {
    throw new InvalidInputError(
      `Invalid lighthouses: ${issues.map((issue) => issue.field).join(", ")}`,
      issues,
    );
  }
}

async function projectView(
  db: Db,
  projectId: string,
  role: string | null,
  now: Date,
) {
  const project = await loadProject(db, projectId);
  const lighthouses = await db.query<
    { ip: string; endpoints: string[]; name: string; device_id: string | null }
  >(
    "select host(ip) as ip, endpoints, name, device_id from public.nebula_lighthouses where project_id = $1 order by ip",
    [projectId],
  );
  const [ca] = await loadProjectCas(db, projectId, now);
  return {
    id: project.id,
    name: project.name,
    cidr: project.cidr,
    role,
    hostCertLifetimeHours: project.host_cert_lifetime_seconds / HOUR,
    caLifetimeDays: project.ca_lifetime_seconds / DAY,
    lighthouses: lighthouses.map((row) => ({
      ip: row.ip,
      endpoints: row.endpoints,
      name: row.name,
      deviceId: row.device_id,
    })),
    pool: await getPoolUsage(db, projectId, now),
    ca: ca
      ? {
        fingerprint: ca.fingerprint,
        notBefore: ca.notBefore.toISOString(),
        notAfter: ca.notAfter.toISOString(),
      }
      : null,
    createdAt: project.created_at.toISOString(),
  };
}

async function createProject(
  deps: HandlerDeps,
  context: RequestContext,
  userId: string,
) {
  const input = parseInput(CreateBody, await readJsonBody(context.request));
  checkLighthouses(input.cidr, input.lighthouses);
  const now = deps.now();
  const caDays = input.caLifetimeDays ?? 730;
  const hostHours = input.hostCertLifetimeHours ?? 24 * 30;

  const projectId = await deps.db.transaction(async (tx) => {
    const [row] = await tx.query<{ id: string }>(
      `insert into public.projects (name, cidr, created_by, host_cert_lifetime, ca_lifetime, created_at)
       values ($1, $2::cidr, $3, make_interval(hours => $4), make_interval(days => $5), $6) returning id`,
      [input.name, input.cidr, userId, hostHours, caDays, now],
    );
    await tx.query(
      "insert into public.project_members (project_id, user_id, role) values ($1, $2, 'owner')",
      [row.id, userId],
    );
    await insertLighthouses(tx, row.id, input.cidr, input.lighthouses);

    const ca = await createCa({
      name: `VidSync ${input.name}`.slice(0, 200),
      cidr: input.cidr,
      notBefore: now,
      notAfter: new Date(now.getTime() + caDays * DAY * 1000),
    });
    const sealed = await sealCaKey(deps.kek, row.id, ca.privateKey);
    ca.privateKey.fill(0);
    await tx.query(
      `insert into public.nebula_cas (project_id, cert_pem, fingerprint, not_before, not_after, encrypted_private_key, key_nonce)
       values ($1, $2, $3, $4, $5, $6, $7)`,
      [
        row.id,
        ca.pem,
        ca.fingerprint,
        ca.notBefore,
        ca.notAfter,
        sealed.ciphertext,
        sealed.nonce,
      ],
    );
    await populatePool(
      tx,
      row.id,
      input.cidr,
      input.lighthouses.map((lighthouse) => lighthouse.ip),
    );

    await appendAuditEvent(tx, auditContext(context, userId), {
      projectId: row.id,
      action: "project.create",
      targetType: "project",
      targetId: row.id,
      after: {
        name: input.name,
        cidr: input.cidr,
        lighthouses: input.lighthouses,
        caFingerprint: ca.fingerprint,
      },
    }, now);
    return row.id;
  });
  context.logFields.projectId = projectId;
  return json(await projectView(deps.db, projectId, "owner", now), 201);
}

async function insertLighthouses(
  tx: Db,
  projectId: string,
  cidr: string,
  lighthouses: LighthouseInput[],
) {
  const prefix = cidr.split("/")[1];
  for (const lighthouse of lighthouses) {
    await tx.query(
      "insert into public.nebula_lighthouses (project_id, ip, endpoints, name) values ($1, $2::inet, $3, $4)",
      [
        projectId,
        `${lighthouse.ip}/${prefix}`,
        lighthouse.endpoints,
        lighthouse.name ?? "",
      ],
    );
  }
}

/**
 * Replaces the lighthouse list. A lighthouse assigned to a device cannot be
 * removed. A new lighthouse address must be free in the pool, which then
 * loses it.
 */
async function updateLighthouses(
  deps: HandlerDeps,
  context: RequestContext,
  userId: string,
) {
  const projectId = context.params.projectId;
  const input = parseInput(PatchBody, await readJsonBody(context.request));
  const now = deps.now();

  await deps.db.transaction(async (tx) => {
    const { project } = await requireRole(tx, projectId, userId, MANAGERS);
    checkLighthouses(project.cidr, input.lighthouses);
    const current = await tx.query<
      { ip: string; device_id: string | null; endpoints: string[] }
    >(
      "select host(ip) as ip, device_id, endpoints from public.nebula_lighthouses where project_id = $1 for update",
      [projectId],
    );
    const wanted = new Set(
      input.lighthouses.map((lighthouse) => lighthouse.ip),
    );
    for (const row of current.filter((row) => !wanted.has(row.ip))) {
      if (row.device_id) {
        throw new ConflictError(
          `Lighthouse ${row.ip} is held by device ${row.device_id}; release it first`,
          "lighthouse_in_use",
        );
      }
      await tx.query(
        "delete from public.nebula_lighthouses where project_id = $1 and host(ip) = $2",
        [projectId, row.ip],
      );
      // The address returns to the pool.
      await tx.query(
        "insert into public.nebula_ip_pool (project_id, ip) values ($1, $2::inet) on conflict do nothing",
        [projectId, `${row.ip}/${project.prefix_length}`],
      );
    }
    const existing = new Set(current.map((row) => row.ip));
    for (
      const lighthouse of input.lighthouses.filter((entry) =>
        !existing.has(entry.ip)
      )
    ) {
      const taken = await tx.query(
        "delete from public.nebula_ip_pool where project_id = $1 and host(ip) = $2 and device_id is null and (quarantined_until is null or quarantined_until <= $3) returning 1",
        [projectId, lighthouse.ip, now],
      );
      if (taken.length === 0) {
        throw new ConflictError(
          `Address ${lighthouse.ip} is in use; pick a free address for the new lighthouse`,
          "address_in_use",
        );
      }
    }
    await tx.query(
      "delete from public.nebula_lighthouses where project_id = $1 and device_id is null",
      [projectId],
    );
    for (const lighthouse of input.lighthouses) {
      await tx.query(
        `insert into public.nebula_lighthouses (project_id, ip, endpoints, name) values ($1, $2::inet, $3, $4)
         on conflict (project_id, ip) do update set endpoints = excluded.endpoints, name = excluded.name`,
        [
          projectId,
          `${lighthouse.ip}/${project.prefix_length}`,
          lighthouse.endpoints,
          lighthouse.name ?? "",
        ],
      );
    }
    await appendAuditEvent(tx, auditContext(context, userId), {
      projectId,
      action: "project.lighthouses.update",
      targetType: "project",
      targetId: projectId,
      before: current,
      after: input.lighthouses,
    }, now);
  });
  return json(await projectView(deps.db, projectId, null, now));
}

async function addMember(
  deps: HandlerDeps,
  context: RequestContext,
  userId: string,
) {
  const projectId = context.params.projectId;
  const input = parseInput(MemberBody, await readJsonBody(context.request));
  const now = deps.now();

  await deps.db.transaction(async (tx) => {
    const { role } = await requireRole(tx, projectId, userId, MANAGERS);
    if (input.role === "owner" && role !== "owner") {
      throw new ForbiddenError("Only an owner can add another owner");
    }
    const users = await tx.query("select 1 from auth.users where id = $1", [
      input.userId,
    ]);
    if (users.length === 0) {
      throw new NotFoundError(
        `User ${input.userId} not found`,
        "user_not_found",
      );
    }
    const before = await tx.query<{ role: string }>(
      "select role from public.project_members where project_id = $1 and user_id = $2 for update",
      [projectId, input.userId],
    );
    if (before[0]?.role === "owner" && role !== "owner") {
      throw new ForbiddenError("Only an owner can change an owner's role");
    }
    await tx.query(
      `insert into public.project_members (project_id, user_id, role) values ($1, $2, $3)
       on conflict (project_id, user_id) do update set role = excluded.role`,
      [projectId, input.userId, input.role],
    );
    await appendAuditEvent(tx, auditContext(context, userId), {
      projectId,
      action: "project.member.set",
      targetType: "user",
      targetId: input.userId,
      before: before[0] ?? null,
      after: { role: input.role },
    }, now);
  });
  return json({ projectId, userId: input.userId, role: input.role });
}

async function removeMember(
  deps: HandlerDeps,
  context: RequestContext,
  userId: string,
) {
  const projectId = context.params.projectId;
  const memberId = parseInput(uuid, context.params.userId, "user id");
  const now = deps.now();

  await deps.db.transaction(async (tx) => {
    const { role } = await requireRole(tx, projectId, userId, MANAGERS);
    const [member] = await tx.query<{ role: string }>(
      "select role from public.project_members where project_id = $1 and user_id = $2 for update",
      [projectId, memberId],
    );
    if (!member) {
      throw new NotFoundError(
        `User ${memberId} is not a member of project ${projectId}`,
        "member_not_found",
      );
    }
    if (member.role === "owner" && role !== "owner") {
      throw new ForbiddenError("Only an owner can remove an owner");
    }
    const [{ owners }] = await tx.query<{ owners: number }>(
      "select count(*)::int as owners from public.project_members where project_id = $1 and role = 'owner'",
      [projectId],
    );
    if (member.role === "owner" && owners <= 1) {
      throw new ConflictError(
        "A project keeps at least one owner; add another owner first",
        "last_owner",
      );
    }
    await tx.query(
      "delete from public.project_members where project_id = $1 and user_id = $2",
      [projectId, memberId],
    );
    await appendAuditEvent(tx, auditContext(context, userId), {
      projectId,
      action: "project.member.remove",
      targetType: "user",
      targetId: memberId,
      before: member,
    }, now);
  });
  return new Response(null, { status: 204 });
}

export function projectRoutes(deps: HandlerDeps): Route[] {
  const authed = (
    work: (
      deps: HandlerDeps,
      context: RequestContext,
      userId: string,
    ) => Promise<Response>,
  ) =>
  async (context: RequestContext) => {
    const { userId } = await deps.auth.authenticate(context.request);
    context.logFields.userId = userId;
    if (context.params.projectId !== undefined) {
      context.params.projectId = parseInput(
        uuid,
        context.params.projectId,
        "project id",
      );
      context.logFields.projectId = context.params.projectId;
    }
    return await work(deps, context, userId);
  };

  return [
    { method: "POST", path: "/", handle: authed(createProject) },
    {
      method: "GET",
      path: "/:projectId",
      handle: authed(async (deps, context, userId) => {
        const { role } = await requireRole(
          deps.db,
          context.params.projectId,
          userId,
          ANY_ROLE,
        );
        return json(
          await projectView(
            deps.db,
            context.params.projectId,
            role,
            deps.now(),
          ),
        );
      }),
    },
    { method: "PATCH", path: "/:projectId", handle: authed(updateLighthouses) },
    { method: "POST", path: "/:projectId/members", handle: authed(addMember) },
    {
      method: "DELETE",
      path: "/:projectId/members/:userId",
      handle: authed(removeMember),
    },
  ];
}
