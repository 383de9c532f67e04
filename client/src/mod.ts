/**
 * Client library of VidSync Mesh: enrolls a device into a project's Nebula
 * overlay network and keeps its configuration up to date.
 */
export * from "./client.ts";
export * from "./errors.ts";
export { type ApiOptions, MeshApi, NOT_MODIFIED } from "./api.ts";
export { checkBundle, pointConfigAt, unzipBundle } from "./bundle.ts";
export {
  type CertificateInfo,
  parseCertificate,
  parseCertificates,
} from "./cert.ts";
export {
  derivePublicKey,
  generateKeyPair,
  type KeyPair,
  keyPairFromPrivatePem,
} from "./keys.ts";
export {
  currentVersion,
  removeConfiguration,
  writeConfiguration,
} from "./store.ts";
