/**
 * Device lifecycle over the Db port: renewal, revocation, blocklist,
 * heartbeat, reclaim of idle devices, and the config ETag.
 */
export type {
  HostCertificateRequest,
  HostCertificateSigner,
  ProjectCa,
  SignedHostCertificate,
} from "./types.ts";
export {
  type CaValidity,
  hostCertificateValidity,
  type Validity,
} from "./validity.ts";
export { loadProjectCas } from "./cas.ts";
export {
  type RenewalInput,
  type RenewalResult,
  renewDeviceCertificate,
} from "./renew.ts";
export {
  getBlocklist,
  revokeCertificate,
  type RevokedCertificate,
  revokeDeviceCertificates,
} from "./revoke.ts";
export { recordHeartbeat } from "./heartbeat.ts";
export {
  type ReclaimedDevice,
  reclaimIdleDevices,
  reclaimSecretMatches,
} from "./reclaim.ts";
export {
  canonicalJson,
  configEtag,
  type ConfigInputs,
  etagMatches,
  loadConfigInputs,
} from "./config_etag.ts";
