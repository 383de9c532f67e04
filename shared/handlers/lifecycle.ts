/**
 * Device lifecycle functions: `nebula-renew`, `nebula-config/{deviceId}`,
 * `nebula-heartbeat/{deviceId}`, `nebula-revoke` and `nebula-reclaim`, plus
 * the per-request rate limits that `nebula-register` shares.
 */
import { z } from "zod";
import type { AuditContext } from "../audit/mod.ts";
import type { AuthUser } from "../auth/mod.ts";
import type { Db } from "../db/port.ts";
import { ForbiddenError, NotFoundError, UnauthorizedError } from "../errors.ts";
import {
  configEtag,
  etagMatches,
  loadConfigInputs,
} from "../lifecycle/config_etag.ts";
import { recordHeartbeat } from "../lifecycle/heartbeat.ts";
import {
  reclaimIdleDevices,
  reclaimSecretMatches,
} from "../lifecycle/reclaim.ts";
import { renewDeviceCertificate } from "../lifecycle/renew.ts";
import {
  LIFECYCLE_REVOCATION_REASONS,
  revokeCertificate,
  revokeDeviceCertificates,
} from "../lifecycle/revoke.ts";
import { encodeBase64 } from "../pki/base64.ts";
import { checkX25519PublicKey, parseDevicePublicKey } from "../pki/keys.ts";
import {
  enforceRateLimits,
  type RateLimitCheck,
  rateLimitHeaders,
  type RateLimitResult,
} from "../ratelimit/mod.ts";
import { clientIp } from "../http/client_ip.ts";
import { json, type RequestContext, type Route } from "../http/serve.ts";
import {
  displayText,
  parseInput,
  readJsonBody,
  uuid,
} from "../http/request.ts";
import { ANY_ROLE, MANAGERS, requireRole, type Role } from "./access.ts";
import { auditContext, auditRefusals } from "./audit_context.ts";
import { deviceTarget } from "./device.ts";
import type { HandlerDeps } from "./deps.ts";
import {
  buildDeviceBundle,
  CONFIG_GENERATOR_VERSION,
  renderConfig,
} from "./device_bundle.ts";
import { createSigner } from "./signer.ts";

/** Header that carries the reclaim secret; the scheduler sends it. */
export const RECLAIM_SECRET_HEADER = "x-reclaim-secret";

const RenewBody = z.strictObject({
  projectId: uuid,
  deviceId: uuid,
  publicKey: z.string().max(4096, "must be at most 4096 characters")
    .optional(),
});

const RevokeBody = z.strictObject({
  projectId: uuid,
  fingerprint: z.string().regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits")
    .transform((value) => value.toLowerCase()).optional(),
  deviceId: uuid.optional(),
  reason: displayText(200).refine(
    // Compared after NFKC and case folding, so that no look-alike of a
    // reserved reason (`Released`, full-width letters) reads as one in the
    // audit log.
    (reason) =>
      !LIFECYCLE_REVOCATION_REASONS.includes(
        reason.normalize("NFKC").trim().toLowerCase(),
      ),
    `must not be one of ${
      LIFECYCLE_REVOCATION_REASONS.join(", ")
    }, which the service records for its own revocations`,
  ).optional(),
}).refine(
  (body) => (body.fingerprint === undefined) !== (body.deviceId === undefined),
  {
    message: "send either fingerprint or deviceId, not both",
    path: ["(body)"],
  },
);

/** Endpoint and ids that a rate-limited request is charged to. */
export interface RateLimitSubject {
  endpoint: string;
  projectId: string | null;
  userId?: string | null;
  deviceId?: string | null;
}

/**
 * Returns `userId/deviceId`, or null without both. Tokens are taken before
 * authorization, so a bucket keyed on the device id alone would let any
 * user drain the budget of someone else's device.
 */
function deviceBucketKey(subject: RateLimitSubject): string | null {
  if (!subject.userId || !subject.deviceId) return null;
  return `${subject.userId}/${subject.deviceId}`;
}

/**
 * Takes one token from the client IP, device and user buckets of `endpoint`
 * and throws RateLimitedError (429 with Retry-After) when one is empty. Call
 * it before the request's transaction, so a refused request costs one
 * statement per bucket and holds no locks.
 *
 * NOTE: a refused request is not written to the audit log, because a flood
 * of refusals would turn into a flood of audit rows.
 */
export async function limitRequest(
  deps: HandlerDeps,
  context: RequestContext,
  subject: RateLimitSubject,
): Promise<RateLimitResult | null> {
  const scoped = (scope: RateLimitCheck["scope"], key?: string | null) =>
    key
      ? [{
        scope,
        key,
        endpoint: subject.endpoint,
        projectId: subject.projectId,
      }]
      : [];

  // Cheapest to waste first: enforceRateLimits spends tokens in order.
  const checks: RateLimitCheck[] = [
    ...scoped("ip", clientIp(context.request)),
    ...scoped("device", deviceBucketKey(subject)),
    ...scoped("user", subject.userId),
  ];
  return await enforceRateLimits(deps.db, checks, deps.now());
}

/**
 * Checks that the token's user exists and takes the request's rate-limit
 * tokens. The two statements are independent, so they run at once on two
 * connections. An unknown user is reported before a rate-limit refusal.
 */
export async function admitRequest(
  deps: HandlerDeps,
  context: RequestContext,
  user: AuthUser,
  subject: Omit<RateLimitSubject, "userId">,
): Promise<RateLimitResult | null> {
  const [exists, limit] = await Promise.allSettled([
    deps.auth.requireUser(user),
    limitRequest(deps, context, { ...subject, userId: user.userId }),
  ]);
  if (exists.status === "rejected") throw exists.reason;
  if (limit.status === "rejected") throw limit.reason;
  return limit.value;
}

function withRateLimitHeaders(
  response: Response,
  limit: RateLimitResult | null,
): Response {
  if (!limit) return response;

  for (const [name, value] of Object.entries(rateLimitHeaders(limit))) {
    response.headers.set(name, value);
  }
  return response;
}

async function deviceOwner(
  db: Db,
  projectId: string,
  deviceId: string,
): Promise<string> {
  const rows = await db.query<{ owner_id: string }>(
    "select owner_id from public.user_devices where project_id = $1 and id = $2",
    [projectId, deviceId],
  );
  if (rows.length === 0) {
    throw new NotFoundError(
      `Device ${deviceId} not found in project ${projectId}`,
      "device_not_found",
    );
  }
  return rows[0].owner_id;
}

/** Passes the device's owner and project owners and admins; other members get 403. */
async function requireOwnerOrManager(
  db: Db,
  target: { projectId: string; deviceId: string },
  userId: string,
  action: string,
): Promise<Role> {
  const { role } = await requireRole(db, target.projectId, userId, ANY_ROLE);
  const owner = await deviceOwner(db, target.projectId, target.deviceId);
  if (owner !== userId && !MANAGERS.includes(role)) {
    throw new ForbiddenError(
      `Only the device's owner or a project owner or admin can ${action} it`,
    );
  }
  return role;
}

function wantsZip(request: Request): boolean {
  return /application\/zip/i.test(request.headers.get("accept") ?? "");
}

function zipResponse(bundle: Uint8Array, deviceId: string): Response {
  const response = new Response(bundle as Uint8Array<ArrayBuffer>);
  response.headers.set("content-type", "application/zip");
  response.headers.set(
    "content-disposition",
    `attachment; filename="nebula-${deviceId}.zip"`,
  );
  return response;
}

async function renew(
  deps: HandlerDeps,
  audit: AuditContext,
  input: z.infer<typeof RenewBody>,
  userId: string,
) {
  const publicKey = input.publicKey === undefined
    ? undefined
    : parseDevicePublicKey(input.publicKey);
  if (publicKey) checkX25519PublicKey(publicKey);
  const now = deps.now();

  // One transaction, with the signer on it too: PGlite has one connection,
  // so a second one from deps.db would wait for this transaction forever.
  return await deps.db.transaction(async (tx) => {
    const { project } = await requireRole(
      tx,
      input.projectId,
      userId,
      ANY_ROLE,
    );
    const renewal = await renewDeviceCertificate(
      tx,
      createSigner(tx, deps.kek),
      {
        projectId: input.projectId,
        deviceId: input.deviceId,
        actorId: userId,
        publicKey,
      },
      audit,
      now,
    );
    const bundle = await buildDeviceBundle(tx, {
      projectId: project.id,
      projectName: project.name,
      deviceId: input.deviceId,
      certificatePem: renewal.certificate.pem,
      notAfter: renewal.certificate.notAfter,
    }, now);
    return { renewal, bundle };
  });
}

/**
 * `POST /nebula-renew {projectId, deviceId, publicKey?}`: re-signs the
 * device's certificate for the same address. A new public key revokes the
 * device's other certificates. The response has the shape of `nebula-register`.
 */
export function renewRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "POST",
    path: "/",
    async handle(context) {
      const user = await deps.auth.verifyToken(context.request);
      const { userId } = user;
      context.logFields.userId = userId;
      const input = parseInput(RenewBody, await readJsonBody(context.request));
      context.logFields.projectId = input.projectId;
      context.logFields.deviceId = input.deviceId;
      const limit = await admitRequest(deps, context, user, {
        endpoint: "nebula-renew",
        projectId: input.projectId,
        deviceId: input.deviceId,
      });
      const audit = auditContext(context, userId);

      const { renewal, bundle } = await auditRefusals(deps, audit, {
        projectId: input.projectId,
        action: "device.renew",
        targetType: "device",
        targetId: input.deviceId,
      }, () => renew(deps, audit, input, userId));

      const headers = {
        "x-nebula-ip": renewal.ip,
        "x-nebula-fingerprint": renewal.certificate.fingerprint,
      };
      const response = wantsZip(context.request)
        ? zipResponse(bundle.bundle, input.deviceId)
        : json({
          projectId: renewal.projectId,
          deviceId: renewal.deviceId,
          deviceName: renewal.deviceName,
          ip: renewal.ip,
          prefixLength: renewal.prefixLength,
          isLighthouse: renewal.isLighthouse,
          certificate: {
            fingerprint: renewal.certificate.fingerprint,
            notBefore: renewal.certificate.notBefore.toISOString(),
            notAfter: renewal.certificate.notAfter.toISOString(),
            pem: renewal.certificate.pem,
          },
          caFingerprints: bundle.caFingerprints,
          previousFingerprint: renewal.previousFingerprint,
          revokedFingerprints: renewal.revokedFingerprints,
          bundle: encodeBase64(bundle.bundle),
        });
      for (const [name, value] of Object.entries(headers)) {
        response.headers.set(name, value);
      }
      return withRateLimitHeaders(response, limit);
    },
  }];
}

/**
 * `GET /nebula-config/{deviceId}?projectId=`: the device's current nebula.yml
 * (lighthouses, blocklist) with a strong ETag over everything it is built
 * from. A request whose `If-None-Match` matches that ETag gets 304 and no
 * body.
 */
export function configRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "GET",
    path: "/:deviceId",
    async handle(context) {
      const user = await deps.auth.verifyToken(context.request);
      const { userId } = user;
      context.logFields.userId = userId;
      const target = deviceTarget(context);
      const limit = await admitRequest(deps, context, user, {
        endpoint: "nebula-config",
        ...target,
      });
      await requireOwnerOrManager(
        deps.db,
        target,
        userId,
        "read the config of",
      );

      const inputs = await loadConfigInputs(
        deps.db,
        target.projectId,
        target.deviceId,
        CONFIG_GENERATOR_VERSION,
        deps.now(),
      );
      const etag = await configEtag(inputs);
      // The config carries the blocklist, so caches must ask every time.
      const headers = { etag, "cache-control": "private, no-cache" };
      const ifNoneMatch = context.request.headers.get("if-none-match");

      const response = etagMatches(ifNoneMatch, etag)
        ? new Response(null, { status: 304, headers })
        : new Response(renderConfig(inputs), {
          headers: { ...headers, "content-type": "application/yaml" },
        });
      return withRateLimitHeaders(response, limit);
    },
  }];
}

/** `POST /nebula-heartbeat/{deviceId}?projectId=`: records that the device is alive. */
export function heartbeatRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "POST",
    path: "/:deviceId",
    async handle(context) {
      const user = await deps.auth.verifyToken(context.request);
      const { userId } = user;
      context.logFields.userId = userId;
      const target = deviceTarget(context);
      const limit = await admitRequest(deps, context, user, {
        endpoint: "nebula-heartbeat",
        ...target,
      });
      await requireOwnerOrManager(deps.db, target, userId, "report");

      const lastSeen = await recordHeartbeat(
        deps.db,
        target.projectId,
        target.deviceId,
        deps.now(),
      );
      return withRateLimitHeaders(
        json({ ...target, lastSeen: lastSeen.toISOString() }),
        limit,
      );
    },
  }];
}

async function certificateDevice(
  db: Db,
  projectId: string,
  fingerprint: string,
): Promise<string> {
  const rows = await db.query<{ device_id: string }>(
    "select device_id from public.nebula_certificates where project_id = $1 and fingerprint = $2",
    [projectId, fingerprint],
  );
  if (rows.length === 0) {
    throw new NotFoundError(
      `Certificate ${fingerprint} not found in project ${projectId}`,
      "not_found",
    );
  }
  return rows[0].device_id;
}

async function revoke(
  deps: HandlerDeps,
  audit: AuditContext,
  input: z.infer<typeof RevokeBody>,
  userId: string,
) {
  const now = deps.now();
  const reason = input.reason ?? "revoked";
  const deviceId = input.deviceId ??
    await certificateDevice(deps.db, input.projectId, input.fingerprint!);
  const target = { projectId: input.projectId, deviceId };
  await requireOwnerOrManager(deps.db, target, userId, "revoke");

  if (input.fingerprint === undefined) {
    const revoked = await revokeDeviceCertificates(
      deps.db,
      { ...target, reason },
      audit,
      now,
    );
    return { ...target, revokedFingerprints: revoked, revokedAt: now };
  }
  const revoked = await revokeCertificate(
    deps.db,
    { projectId: input.projectId, fingerprint: input.fingerprint, reason },
    audit,
    now,
  );
  return {
    ...target,
    revokedFingerprints: revoked.revokedFingerprints,
    revokedAt: revoked.revokedAt,
  };
}

/**
 * `POST /nebula-revoke {projectId, fingerprint | deviceId, reason?}`: revokes
 * one certificate and the other certificates of its public key, or every
 * certificate of a device. Unexpired ones stay on the project's blocklist
 * until they expire, and the revoked keys cannot register again. The
 * address stays allocated. Allowed for the device's owner and for project
 * owners and admins.
 */
export function revokeRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "POST",
    path: "/",
    async handle(context) {
      const user = await deps.auth.verifyToken(context.request);
      const { userId } = user;
      context.logFields.userId = userId;
      const input = parseInput(RevokeBody, await readJsonBody(context.request));
      context.logFields.projectId = input.projectId;
      context.logFields.deviceId = input.deviceId;
      const limit = await admitRequest(deps, context, user, {
        endpoint: "nebula-revoke",
        projectId: input.projectId,
      });
      const audit = auditContext(context, userId);

      const result = await auditRefusals(deps, audit, {
        projectId: input.projectId,
        action: input.fingerprint ? "certificate.revoke" : "device.revoke",
        targetType: input.fingerprint ? "certificate" : "device",
        targetId: input.fingerprint ?? input.deviceId!,
      }, () => revoke(deps, audit, input, userId));

      return withRateLimitHeaders(
        json({ ...result, revokedAt: result.revokedAt.toISOString() }),
        limit,
      );
    },
  }];
}

/**
 * `POST /nebula-reclaim`: releases every device idle longer than its
 * project's device_idle_timeout. Called by a scheduler with the shared secret
 * in the `x-reclaim-secret` header, never with a user token.
 */
export function reclaimRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "POST",
    path: "/",
    async handle(context) {
      await limitRequest(deps, context, {
        endpoint: "nebula-reclaim",
        projectId: null,
      });
      const presented = context.request.headers.get(RECLAIM_SECRET_HEADER);
      if (!await reclaimSecretMatches(presented, deps.reclaimSecret)) {
        throw new UnauthorizedError(
          `Send the reclaim secret (NEBULA_RECLAIM_SECRET) in the ${RECLAIM_SECRET_HEADER} header`,
          "invalid_reclaim_secret",
        );
      }

      const reclaimed = await reclaimIdleDevices(deps.db, deps.now());
      deps.logger.info("idle devices reclaimed", {
        requestId: context.requestId,
        count: reclaimed.length,
      });
      return json({
        reclaimed: reclaimed.map((device) => ({
          ...device,
          lastActivity: device.lastActivity.toISOString(),
          quarantinedUntil: device.quarantinedUntil?.toISOString() ?? null,
        })),
      });
    },
  }];
}
