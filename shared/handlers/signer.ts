/** Signs host certificates with a project's CA, unsealing its key for the one signature. */
import type { Db } from "../db/port.ts";
import type {
  HostCertificateRequest,
  HostCertificateSigner,
  SignedHostCertificate,
} from "../lifecycle/types.ts";
import {
  readCertificatePem,
  type SignedCertificate,
  signHostCertificate,
} from "../pki/ca.ts";
import { openCaKey, type SealedKey } from "../pki/key_encryption.ts";

/** Parsed CA certificates by PEM text; a project has one or two CAs at a time. */
const parsedCas = new Map<string, Promise<SignedCertificate>>();
const PARSED_CAS_MAX = 256;

function parseCa(pem: string): Promise<SignedCertificate> {
  let parsed = parsedCas.get(pem);
  if (!parsed) {
    if (parsedCas.size >= PARSED_CAS_MAX) parsedCas.clear();
    parsed = readCertificatePem(pem);
    // A PEM that fails to parse is not kept.
    parsed.catch(() => parsedCas.delete(pem));
    parsedCas.set(pem, parsed);
  }
  return parsed;
}

/** Signs with the CA key in `sealed`, which the caller read from `request.ca`'s row. */
export async function signWithSealedKey(
  kek: Uint8Array,
  request: HostCertificateRequest,
  sealed: SealedKey,
): Promise<SignedHostCertificate> {
  const caPrivateKey = await openCaKey(kek, request.projectId, sealed);
  try {
    const signed = await signHostCertificate({
      ca: await parseCa(request.ca.certPem),
      caPrivateKey,
      publicKey: request.publicKey,
      name: request.name,
      ip: request.ip,
      prefixLength: request.prefixLength,
      groups: request.groups,
      notBefore: request.notBefore,
      notAfter: request.notAfter,
    });
    return {
      pem: signed.pem,
      fingerprint: signed.fingerprint,
      notBefore: signed.notBefore,
      notAfter: signed.notAfter,
    };
  } finally {
    caPrivateKey.fill(0);
  }
}

export function createSigner(db: Db, kek: Uint8Array): HostCertificateSigner {
  return async function signWithProjectCa(
    request: HostCertificateRequest,
  ): Promise<SignedHostCertificate> {
    const [row] = await db.query<
      { encrypted_private_key: Uint8Array; key_nonce: Uint8Array }
    >(
      "select encrypted_private_key, key_nonce from public.nebula_cas where id = $1 and project_id = $2",
      [request.ca.id, request.projectId],
    );
    if (!row) {
      throw new Error(
        `CA ${request.ca.id} of project ${request.projectId} has no stored key`,
      );
    }
    return await signWithSealedKey(kek, request, {
      ciphertext: row.encrypted_private_key,
      nonce: row.key_nonce,
    });
  };
}

/** Group every device certificate of a project carries; the generated firewall admits it. */
export function projectGroup(projectId: string): string {
  return `project:${projectId}`;
}
