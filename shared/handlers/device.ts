/** `nebula-ca`, `nebula-status/{deviceId}` and `nebula-release/{deviceId}`. */
import { z } from "zod";
import { appendAuditEvent } from "../audit/mod.ts";
import { releaseDevice } from "../allocator/mod.ts";
import type { Db } from "../db/port.ts";
import { ForbiddenError, NotFoundError } from "../errors.ts";
import { json, type RequestContext, type Route } from "../http/serve.ts";
import { parseInput, queryObject, uuid } from "../http/request.ts";
import { loadProjectCas } from "../lifecycle/cas.ts";
import { ANY_ROLE, loadProject, MANAGERS, requireRole } from "./access.ts";
import { auditContext, auditRefusals } from "./audit_context.ts";
import type { HandlerDeps } from "./deps.ts";
import { loadCaBundle } from "./device_bundle.ts";

/** Query string of the endpoints that act on one project. */
export const ProjectQuery = z.strictObject({ projectId: uuid });

interface DeviceRow {
  id: string;
  name: string;
  owner_id: string;
  ip: string | null;
  prefix_length: number;
  is_lighthouse: boolean;
  nebula_last_seen: Date | null;
  created_at: Date;
}

async function loadDevice(
  db: Db,
  projectId: string,
  deviceId: string,
): Promise<DeviceRow> {
  const rows = await db.query<DeviceRow>(
    `select d.id, d.name, d.owner_id, host(d.nebula_ip) as ip, masklen(p.cidr) as prefix_length,
       d.is_lighthouse, d.nebula_last_seen, d.created_at
     from public.user_devices d join public.projects p on p.id = d.project_id
     where d.project_id = $1 and d.id = $2`,
    [projectId, deviceId],
  );
  if (rows.length === 0) {
    throw new NotFoundError(
      `Device ${deviceId} not found in project ${projectId}`,
      "device_not_found",
    );
  }
  return rows[0];
}

/** Reads `{deviceId}` from the path and `projectId` from the query. */
export function deviceTarget(context: RequestContext) {
  const { projectId } = parseInput(
    ProjectQuery,
    queryObject(context.url),
    "query string",
  );
  const deviceId = parseInput(uuid, context.params.deviceId, "device id");
  context.logFields.projectId = projectId;
  context.logFields.deviceId = deviceId;
  return { projectId, deviceId };
}

export function caRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "GET",
    path: "/",
    async handle(context) {
      const { projectId } = parseInput(
        ProjectQuery,
        queryObject(context.url),
        "query string",
      );
      context.logFields.projectId = projectId;
      await loadProject(deps.db, projectId);
      const ca = await loadCaBundle(deps.db, projectId, deps.now());
      return new Response(ca.pem, {
        headers: {
          "content-type": "application/x-pem-file",
          "cache-control": "public, max-age=300",
          "x-nebula-ca-fingerprints": ca.fingerprints.join(","),
        },
      });
    },
  }];
}

export function statusRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "GET",
    path: "/:deviceId",
    async handle(context) {
      const { userId } = await deps.auth.authenticate(context.request);
      context.logFields.userId = userId;
      const { projectId, deviceId } = deviceTarget(context);
      await requireRole(deps.db, projectId, userId, ANY_ROLE);
      const device = await loadDevice(deps.db, projectId, deviceId);
      if (device.ip === null) {
        throw new NotFoundError(
          `Device ${deviceId} was released from project ${projectId}; register it again to rejoin`,
          "device_not_found",
        );
      }
      const now = deps.now();

      const [certificate] = await deps.db.query<
        {
          fingerprint: string;
          not_before: Date;
          not_after: Date;
          revoked_at: Date | null;
        }
      >(
        `select fingerprint, not_before, not_after, revoked_at from public.nebula_certificates
         where project_id = $1 and device_id = $2 order by not_before desc, created_at desc limit 1`,
        [projectId, deviceId],
      );
      const [ca] = await loadProjectCas(deps.db, projectId, now);
      return json({
        projectId,
        deviceId,
        deviceName: device.name,
        ownerId: device.owner_id,
        ip: device.ip,
        prefixLength: device.ip ? device.prefix_length : null,
        isLighthouse: device.is_lighthouse,
        lastSeen: device.nebula_last_seen?.toISOString() ?? null,
        certificate: certificate
          ? {
            fingerprint: certificate.fingerprint,
            notBefore: certificate.not_before.toISOString(),
            notAfter: certificate.not_after.toISOString(),
            revokedAt: certificate.revoked_at?.toISOString() ?? null,
          }
          : null,
        ca: ca
          ? { fingerprint: ca.fingerprint, notAfter: ca.notAfter.toISOString() }
          : null,
      });
    },
  }];
}

export function releaseRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "POST",
    path: "/:deviceId",
    async handle(context) {
      const { userId } = await deps.auth.authenticate(context.request);
      context.logFields.userId = userId;
      const { projectId, deviceId } = deviceTarget(context);
      const audit = auditContext(context, userId);
      const now = deps.now();

      const release = await auditRefusals(
        deps,
        audit,
        {
          projectId,
          action: "device.release",
          targetType: "device",
          targetId: deviceId,
        },
        () =>
          deps.db.transaction(async (tx) => {
            const { role } = await requireRole(tx, projectId, userId, ANY_ROLE);
            const device = await loadDevice(tx, projectId, deviceId);
            if (device.owner_id !== userId && !MANAGERS.includes(role)) {
              throw new ForbiddenError(
                "Only the device's owner or a project admin can release it",
              );
            }
            const result = await releaseDevice(
              tx,
              { projectId, deviceId },
              now,
            );
            await appendAuditEvent(tx, audit, {
              projectId,
              action: "device.release",
              targetType: "device",
              targetId: deviceId,
              before: { ip: device.ip },
              after: {
                revokedFingerprints: result.revokedFingerprints,
                quarantinedUntil: result.quarantinedUntil,
              },
            }, now);
            return result;
          }),
      );

      return json({
        projectId,
        deviceId,
        ip: release.ip,
        releasedAt: now.toISOString(),
        quarantinedUntil: release.quarantinedUntil?.toISOString() ?? null,
        revokedFingerprints: release.revokedFingerprints,
      });
    },
  }];
}
