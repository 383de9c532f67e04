/** A CA of a project, as stored in public.nebula_cas (without its sealed key). */
export interface ProjectCa {
  id: string;
  fingerprint: string;
  certPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** Request to sign a host certificate. */
export interface HostCertificateRequest {
  projectId: string;
  /** The CA to sign with; the signer unseals its key by id. */
  ca: ProjectCa;
  name: string;
  /** Overlay address without prefix, e.g. `10.42.0.5`. */
  ip: string;
  prefixLength: number;
  groups: string[];
  /** Raw 32-byte X25519 public key. */
  publicKey: Uint8Array;
  notBefore: Date;
  notAfter: Date;
}

/** A signed host certificate. */
export interface SignedHostCertificate {
  pem: string;
  /** Lowercase hex SHA-256 of the whole certificate, the form pki.blocklist matches. */
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * Signs a host certificate with the project's CA. The Edge Functions pass the
 * native TypeScript signer; the signer must use the validity it is given.
 */
export type HostCertificateSigner = (
  request: HostCertificateRequest,
) => Promise<SignedHostCertificate>;
