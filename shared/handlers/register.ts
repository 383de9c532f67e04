/**
 * `POST /nebula-register`: allocates the device's address, signs its
 * certificate and returns the bundle. Everything runs in one transaction, so
 * a failure at any step leaves no allocation, certificate or device row.
 */
import { z } from "zod";
import { appendAuditEvent } from "../audit/mod.ts";
import { allocateIp, assignLighthouseIp } from "../allocator/mod.ts";
import type { Db } from "../db/port.ts";
import { violatedConstraint } from "../db/errors.ts";
import { ConflictError, ProblemError } from "../errors.ts";
import { json, type RequestContext, type Route } from "../http/serve.ts";
import {
  displayText,
  parseInput,
  readJsonBody,
  uuid,
} from "../http/request.ts";
import { loadProjectCas } from "../lifecycle/cas.ts";
import { hostCertificateValidity } from "../lifecycle/validity.ts";
import { encodeBase64 } from "../pki/base64.ts";
import { checkX25519PublicKey, parseDevicePublicKey } from "../pki/keys.ts";
import { rateLimitHeaders } from "../ratelimit/mod.ts";
import {
  ANY_ROLE,
  MANAGERS,
  type ProjectRow,
  requireRole,
  type Role,
} from "./access.ts";
import { auditContext, auditRefusals } from "./audit_context.ts";
import type { HandlerDeps } from "./deps.ts";
import { buildDeviceBundle } from "./device_bundle.ts";
import { limitRequest } from "./lifecycle.ts";
import { createSigner, projectGroup } from "./signer.ts";

const RegisterBody = z.strictObject({
  projectId: uuid,
  deviceId: uuid,
  deviceName: displayText(200),
  publicKey: z.string().max(4096, "must be at most 4096 characters"),
  lighthouse: z.boolean().optional(),
  /** Lighthouse address to take when the project has several free ones. */
  lighthouseIp: z.ipv4().optional(),
}).refine(
  (body) => body.lighthouseIp === undefined || body.lighthouse === true,
  {
    message: "lighthouseIp needs lighthouse: true",
    path: ["lighthouseIp"],
  },
);

type RegisterInput = z.infer<typeof RegisterBody>;

interface DeviceRow {
  owner_id: string;
  public_key: Uint8Array | null;
  nebula_ip: string | null;
  is_lighthouse: boolean;
}

/** Creates the device row or locks the existing one; another user's device is a conflict. */
async function claimDevice(
  tx: Db,
  input: RegisterInput,
  userId: string,
  publicKey: Uint8Array,
  now: Date,
) {
  // The no-op update on conflict locks an existing row and returns it, so
  // creating and locking the device is one round trip.
  const [device] = await tx.query<DeviceRow>(
    `insert into public.user_devices (project_id, id, owner_id, name, public_key, created_at, updated_at)
     values ($1, $2, $3, $4, $5, $6, $6)
     on conflict (project_id, id) do update set updated_at = public.user_devices.updated_at
     returning owner_id, public_key, nebula_ip::text as nebula_ip, is_lighthouse`,
    [input.projectId, input.deviceId, userId, input.deviceName, publicKey, now],
  );
  if (device.owner_id !== userId) {
    throw new ConflictError(
      `Device ${input.deviceId} belongs to another user; pick a new device id for this machine`,
      "device_owned_by_other_user",
    );
  }
  return device;
}

/** Two machines with one key (a cloned disk) would collapse into one Nebula peer. */
async function checkKeyUnused(
  tx: Db,
  input: RegisterInput,
  publicKey: Uint8Array,
) {
  const others = await tx.query(
    `select 1 from public.user_devices
     where project_id = $1 and public_key = $2 and id <> $3 and nebula_ip is not null`,
    [input.projectId, publicKey, input.deviceId],
  );
  if (others.length > 0) {
    throw new ConflictError(
      "Another device of this project already uses this public key; generate a new key pair on this machine",
      "public_key_in_use",
    );
  }
}

async function pickLighthouseIp(tx: Db, input: RegisterInput): Promise<string> {
  const rows = await tx.query<{ ip: string }>(
    `select host(ip) as ip from public.nebula_lighthouses
     where project_id = $1 and (device_id is null or device_id = $2)
       and ($3::inet is null or host(ip) = host($3::inet))
     order by device_id is null, ip limit 1`,
    [input.projectId, input.deviceId, input.lighthouseIp ?? null],
  );
  if (rows.length === 0) {
    throw new ConflictError(
      "No free lighthouse of this project matches; name a lighthouse address of the project, or release the device holding it",
      "no_free_lighthouse",
    );
  }
  return rows[0].ip;
}

async function allocate(
  tx: Db,
  input: RegisterInput,
  userId: string,
  now: Date,
) {
  if (!input.lighthouse) {
    return await allocateIp(tx, {
      projectId: input.projectId,
      deviceId: input.deviceId,
      allocatedBy: userId,
    }, now);
  }
  const ip = await pickLighthouseIp(tx, input);
  return await assignLighthouseIp(tx, {
    projectId: input.projectId,
    deviceId: input.deviceId,
    ip,
    allocatedBy: userId,
  }, now);
}

async function signForDevice(
  tx: Db,
  deps: HandlerDeps,
  project: ProjectRow,
  request: {
    input: RegisterInput;
    ip: string;
    prefixLength: number;
    publicKey: Uint8Array;
    now: Date;
  },
) {
  const cas = await loadProjectCas(tx, project.id, request.now);
  const [ca] = cas;
  const validity = ca &&
    hostCertificateValidity(
      request.now,
      project.host_cert_lifetime_seconds,
      ca,
    );
  if (!validity) {
    throw new ConflictError(
      "The project has no valid CA to sign with; set the project's network up again",
      "ca_expired",
    );
  }
  const groups = [
    projectGroup(project.id),
    ...(request.input.lighthouse ? ["lighthouse"] : []),
  ];
  const signed = await createSigner(tx, deps.kek)({
    projectId: project.id,
    ca,
    name: request.input.deviceName,
    ip: request.ip,
    prefixLength: request.prefixLength,
    groups,
    publicKey: request.publicKey,
    ...validity,
  });
  const inserted = await tx.query(
    `insert into public.nebula_certificates
       (fingerprint, project_id, device_id, ca_fingerprint, ip, name, groups, public_key, not_before, not_after, created_at)
     values ($1, $2, $3, $4, $5::inet, $6, $7, $8, $9, $10, $11)
     on conflict (fingerprint) do nothing
     returning fingerprint`,
    [
      signed.fingerprint,
      project.id,
      request.input.deviceId,
      ca.fingerprint,
      `${request.ip}/${request.prefixLength}`,
      request.input.deviceName,
      groups,
      request.publicKey,
      signed.notBefore,
      signed.notAfter,
      request.now,
    ],
  );
  // Equal inputs within one second sign to equal bytes: the certificate
  // exists already, which is fine unless it has been revoked since.
  if (inserted.length === 0) await checkNotRevoked(tx, signed.fingerprint);
  return { signed, cas };
}

async function checkNotRevoked(tx: Db, fingerprint: string) {
  const [row] = await tx.query<{ revoked: boolean }>(
    "select revoked_at is not null as revoked from public.nebula_certificates where fingerprint = $1",
    [fingerprint],
  );
  if (row?.revoked) {
    throw new ConflictError(
      "The certificate for this request was revoked this second; retry in one second",
      "retry_later",
    );
  }
}

/** Revokes the certificates of a known device's old key when it registers a new one. */
async function supersedeOldKey(
  tx: Db,
  input: RegisterInput,
  publicKey: Uint8Array,
  now: Date,
) {
  await tx.query(
    `update public.nebula_certificates set revoked_at = $4, revocation_reason = 'key_changed'
     where project_id = $1 and device_id = $2 and public_key <> $3 and revoked_at is null and not_after > $4`,
    [input.projectId, input.deviceId, publicKey, now],
  );
  await tx.query(
    "update public.user_devices set public_key = $3, name = $4, updated_at = $5 where project_id = $1 and id = $2",
    [input.projectId, input.deviceId, publicKey, input.deviceName, now],
  );
}

async function register(
  deps: HandlerDeps,
  context: RequestContext,
  input: RegisterInput,
  userId: string,
) {
  const publicKey = parseDevicePublicKey(input.publicKey);
  await checkX25519PublicKey(publicKey);
  const now = deps.now();
  const roles: Role[] = input.lighthouse ? MANAGERS : ANY_ROLE;

  return await deps.db.transaction(async (tx) => {
    const { project } = await requireRole(tx, input.projectId, userId, roles);
    const device = await claimDevice(tx, input, userId, publicKey, now);
    if (
      device.nebula_ip && device.is_lighthouse !== Boolean(input.lighthouse)
    ) {
      throw new ConflictError(
        `Device ${input.deviceId} is registered ${
          device.is_lighthouse ? "as" : "not as"
        } a lighthouse; release it first to change its role`,
        "device_role_mismatch",
      );
    }
    await checkKeyUnused(tx, input, publicKey);
    await supersedeOldKey(tx, input, publicKey, now);

    const created = device.nebula_ip === null;
    const { ip, prefixLength } = await allocate(tx, input, userId, now);
    const { signed, cas } = await signForDevice(tx, deps, project, {
      input,
      ip,
      prefixLength,
      publicKey,
      now,
    });
    const bundle = await buildDeviceBundle(
      tx,
      {
        projectId: project.id,
        projectName: project.name,
        deviceId: input.deviceId,
        certificatePem: signed.pem,
        notAfter: signed.notAfter,
      },
      now,
      cas,
    );

    await appendAuditEvent(tx, auditContext(context, userId), {
      projectId: project.id,
      action: created ? "device.register" : "device.reregister",
      targetType: "device",
      targetId: input.deviceId,
      before: created ? null : { ip: device.nebula_ip },
      after: {
        ip,
        fingerprint: signed.fingerprint,
        lighthouse: Boolean(input.lighthouse),
      },
    }, now);
    return { created, ip, prefixLength, signed, bundle };
  });
}

function mapConstraintError(error: unknown): unknown {
  if (error instanceof ProblemError) return error;
  if (violatedConstraint(error) === "user_devices_public_key_active_unique") {
    return new ConflictError(
      "Another device of this project already uses this public key",
      "public_key_in_use",
    );
  }
  return error;
}

export function registerRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "POST",
    path: "/",
    async handle(context) {
      const { userId } = await deps.auth.authenticate(context.request);
      context.logFields.userId = userId;
      const input = parseInput(
        RegisterBody,
        await readJsonBody(context.request),
      );
      context.logFields.projectId = input.projectId;
      context.logFields.deviceId = input.deviceId;
      const limit = await limitRequest(deps, context, {
        endpoint: "nebula-register",
        projectId: input.projectId,
        deviceId: input.deviceId,
        userId,
      });

      const result = await auditRefusals(
        deps,
        auditContext(context, userId),
        {
          projectId: input.projectId,
          action: "device.register",
          targetType: "device",
          targetId: input.deviceId,
        },
        () =>
          register(deps, context, input, userId).catch((error) =>
            Promise.reject(mapConstraintError(error))
          ),
      );

      const status = result.created ? 201 : 200;
      const headers = {
        "x-nebula-ip": result.ip,
        "x-nebula-fingerprint": result.signed.fingerprint,
        ...(limit ? rateLimitHeaders(limit) : {}),
      };
      if (
        /application\/zip/i.test(context.request.headers.get("accept") ?? "")
      ) {
        const zip = new Response(
          result.bundle.bundle as Uint8Array<ArrayBuffer>,
          { status, headers },
        );
        zip.headers.set("content-type", "application/zip");
        zip.headers.set(
          "content-disposition",
          `attachment; filename="nebula-${input.deviceId}.zip"`,
        );
        return zip;
      }
      return json(
        {
          projectId: input.projectId,
          deviceId: input.deviceId,
          deviceName: input.deviceName,
          ip: result.ip,
          prefixLength: result.prefixLength,
          isLighthouse: Boolean(input.lighthouse),
          certificate: {
            fingerprint: result.signed.fingerprint,
            notBefore: result.signed.notBefore.toISOString(),
            notAfter: result.signed.notAfter.toISOString(),
            pem: result.signed.pem,
          },
          caFingerprints: result.bundle.caFingerprints,
          bundle: encodeBase64(result.bundle.bundle),
        },
        status,
        headers,
      );
    },
  }];
}
