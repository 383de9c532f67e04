/**
 * `POST /nebula-register`: allocates the device's address, signs its
 * certificate and returns the bundle. Everything runs in one transaction, so
 * a failure at any step leaves no allocation, certificate or device row.
 */
import { z } from "zod";
import { auditCall } from "../audit/mod.ts";
import type { Db } from "../db/port.ts";
import { sqlState, violatedConstraint } from "../db/errors.ts";
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
import type { ConfigInputs } from "../lifecycle/config_etag.ts";
import type { ProjectCa } from "../lifecycle/types.ts";
import { hostCertificateValidity } from "../lifecycle/validity.ts";
import { encodeBase64, fromHex } from "../pki/base64.ts";
import { checkX25519PublicKey, parseDevicePublicKey } from "../pki/keys.ts";
import { rateLimitHeaders } from "../ratelimit/mod.ts";
import { MANAGERS } from "./access.ts";
import { auditContext, auditRefusals } from "./audit_context.ts";
import type { HandlerDeps } from "./deps.ts";
import { bundleFromInputs, CONFIG_GENERATOR_VERSION } from "./device_bundle.ts";
import { admitRequest } from "./lifecycle.ts";
import { projectGroup, signWithSealedKey } from "./signer.ts";

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

/** Result of public.register_nebula_device: the claim, and the inputs of the signature and nebula.yml. */
interface Claim {
  project_name: string;
  cidr: string;
  host_cert_lifetime_seconds: number;
  created: boolean;
  previous_ip: string | null;
  ip: string;
  prefix_length: number;
  cas: {
    id: string;
    fingerprint: string;
    cert_pem: string;
    not_before: string;
    not_after: string;
  }[];
  signing_key: string | null;
  signing_key_nonce: string | null;
  lighthouses: { ip: string; endpoints: string[]; name: string }[];
  blocklist: string[];
}

/** Turns the refusals of the registration functions into problem details. */
function registrationProblem(error: unknown, input: RegisterInput): unknown {
  const detail = (error as { detail?: string }).detail;
  switch (sqlState(error)) {
    case "VS003":
      return new NotFoundError(
        `Project ${input.projectId} not found`,
        "project_not_found",
      );
    case "VS005":
      return new InvalidInputError(
        `Project ${input.projectId} has no lighthouse at ${input.lighthouseIp}; pick one of the lighthouse addresses that GET nebula-project lists`,
        [{
          field: "lighthouseIp",
          message: "is not a lighthouse address of the project",
        }],
        "lighthouse_not_found",
      );
    case "VS006":
      return new ConflictError(
        `Lighthouse ${
          input.lighthouseIp ?? "address"
        } was taken by another device; release that device first, or omit lighthouseIp to take any free lighthouse`,
        "lighthouse_taken",
      );
    case "VS007":
      return new ConflictError(
        `Device ${input.deviceId} already has another address; to move it to ${
          input.lighthouseIp
            ? `lighthouse ${input.lighthouseIp}`
            : "another lighthouse"
        }, release the device first (POST nebula-release/${input.deviceId}), then register it again`,
        "device_has_address",
      );
    case "VS201":
      return new ForbiddenError(
        `You are not a member of project ${input.projectId}`,
      );
    case "VS202":
      return new ForbiddenError(
        `This needs the ${
          MANAGERS.join(" or ")
        } role in the project; you are ${detail}`,
      );
    case "VS203":
      return new ConflictError(
        `Device ${input.deviceId} belongs to another user; pick a new device id for this machine`,
        "device_owned_by_other_user",
      );
    case "VS204":
      return new ConflictError(
        `Device ${input.deviceId} is registered ${
          detail === "lighthouse" ? "as" : "not as"
        } a lighthouse; release it first to change its role`,
        "device_role_mismatch",
      );
    case "VS205":
      // Two machines with one key (a cloned disk) would collapse into one Nebula peer.
      return new ConflictError(
        "Another device of this project already uses this public key; generate a new key pair on this machine",
        "public_key_in_use",
      );
    case "VS206":
      return new ConflictError(
        "No free lighthouse of this project matches; name a lighthouse address of the project, or release the device holding it",
        "no_free_lighthouse",
      );
    case "VS208":
      return new ForbiddenError(
        detail === "device"
          ? `Device ${input.deviceId} has a revoked certificate; release the device (its owner or a project owner or admin can), then register it with a new key pair`
          : "A certificate for this public key was revoked in this project, so the key may not join it again; generate a new key pair on this machine",
        "certificate_revoked",
      );
    case "VS207":
      return new ConflictError(
        "The certificate for this request was revoked this second; retry in one second",
        "retry_later",
      );
  }
  if (violatedConstraint(error) === "user_devices_public_key_active_unique") {
    return new ConflictError(
      "Another device of this project already uses this public key",
      "public_key_in_use",
    );
  }
  return error;
}

/** Claims the device and its address: role, ownership and key checks, allocation. */
async function claim(
  tx: Db,
  input: RegisterInput,
  userId: string,
  publicKey: Uint8Array,
  now: Date,
): Promise<Claim> {
  const [row] = await tx.query<{ claim: Claim }>(
    "select public.register_nebula_device($1, $2, $3, $4, $5, $6, $7::inet, $8) as claim",
    [
      input.projectId,
      input.deviceId,
      userId,
      input.deviceName,
      publicKey,
      Boolean(input.lighthouse),
      input.lighthouseIp ?? null,
      now,
    ],
  );
  return row.claim;
}

function projectCas(claimed: Claim): ProjectCa[] {
  return claimed.cas.map((ca) => ({
    id: ca.id,
    fingerprint: ca.fingerprint,
    certPem: ca.cert_pem,
    notBefore: new Date(ca.not_before),
    notAfter: new Date(ca.not_after),
  }));
}

async function register(
  deps: HandlerDeps,
  context: RequestContext,
  input: RegisterInput,
  userId: string,
) {
  const publicKey = parseDevicePublicKey(input.publicKey);
  checkX25519PublicKey(publicKey);
  const now = deps.now();

  // Two calls around the signature, in one transaction: a failure at any
  // step leaves no device row, allocation, certificate or audit row.
  return await deps.db.transaction(async (tx) => {
    const claimed = await claim(tx, input, userId, publicKey, now);
    const cas = projectCas(claimed);
    const [ca] = cas;
    const validity = ca &&
      hostCertificateValidity(now, claimed.host_cert_lifetime_seconds, ca);
    const { signing_key: sealedKey, signing_key_nonce: nonce } = claimed;
    if (!validity || !sealedKey || !nonce) {
      throw new ConflictError(
        "The project has no valid CA to sign with; set the project's network up again",
        "ca_expired",
      );
    }
    const { ip, prefix_length: prefixLength } = claimed;
    const groups = [
      projectGroup(input.projectId),
      ...(input.lighthouse ? ["lighthouse"] : []),
    ];
    const signed = await signWithSealedKey(deps.kek, {
      projectId: input.projectId,
      ca,
      name: input.deviceName,
      ip,
      prefixLength,
      groups,
      publicKey,
      ...validity,
    }, {
      ciphertext: fromHex(sealedKey),
      nonce: fromHex(nonce),
    });

    const inputs: ConfigInputs = {
      generatorVersion: CONFIG_GENERATOR_VERSION,
      projectId: input.projectId,
      cidr: claimed.cidr,
      deviceId: input.deviceId,
      deviceName: input.deviceName,
      ip,
      prefixLength,
      isLighthouse: Boolean(input.lighthouse),
      certificateFingerprint: signed.fingerprint,
      caFingerprints: cas.map((entry) => entry.fingerprint).sort(),
      lighthouses: claimed.lighthouses,
      blocklist: claimed.blocklist,
    };
    const bundle = await bundleFromInputs(
      {
        projectId: input.projectId,
        projectName: claimed.project_name,
        deviceId: input.deviceId,
        certificatePem: signed.pem,
        notAfter: signed.notAfter,
      },
      inputs,
      cas,
      now,
    );

    // The certificate and its audit row in one statement, last: the audit
    // row locks the project's audit chain until commit, so every other
    // registration of the project waits as long as the lock lasts.
    const audit = auditCall(
      auditContext(context, userId),
      {
        projectId: input.projectId,
        action: claimed.created ? "device.register" : "device.reregister",
        targetType: "device",
        targetId: input.deviceId,
        before: claimed.created ? null : { ip: claimed.previous_ip },
        after: {
          ip,
          fingerprint: signed.fingerprint,
          lighthouse: Boolean(input.lighthouse),
        },
      },
      now,
      12,
    );
    await tx.query(
      `select a.id from public.record_nebula_certificate(
         $1, $2, $3, $4, $5::inet, $6, $7, $8, $9, $10, $11), ${audit.sql} a`,
      [
        signed.fingerprint,
        input.projectId,
        input.deviceId,
        ca.fingerprint,
        `${ip}/${prefixLength}`,
        input.deviceName,
        groups,
        publicKey,
        signed.notBefore,
        signed.notAfter,
        now,
        ...audit.params,
      ],
    );

    return { created: claimed.created, ip, prefixLength, signed, bundle };
  }).catch((error) => Promise.reject(registrationProblem(error, input)));
}

export function registerRoutes(deps: HandlerDeps): Route[] {
  return [{
    method: "POST",
    path: "/",
    async handle(context) {
      const user = await deps.auth.verifyToken(context.request);
      const { userId } = user;
      context.logFields.userId = userId;
      const input = parseInput(
        RegisterBody,
        await readJsonBody(context.request),
      );
      context.logFields.projectId = input.projectId;
      context.logFields.deviceId = input.deviceId;
      const limit = await admitRequest(deps, context, user, {
        endpoint: "nebula-register",
        projectId: input.projectId,
        deviceId: input.deviceId,
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
        () => register(deps, context, input, userId),
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
