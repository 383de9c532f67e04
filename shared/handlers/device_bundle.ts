/** Assembles what a device receives: CA bundle, its certificate, nebula.yml and README in a ZIP. */
import type { Db } from "../db/port.ts";
import { buildBundle, bundleReadme } from "../bundle/mod.ts";
import { generateNebulaConfig, listenPort } from "../config/nebula_yml.ts";
import { loadProjectCas } from "../lifecycle/cas.ts";
import type { ProjectCa } from "../lifecycle/types.ts";
import {
  type ConfigInputs,
  loadConfigInputs,
} from "../lifecycle/config_etag.ts";
import { projectGroup } from "./signer.ts";

/** Changes whenever the generated nebula.yml changes shape, so every ETag changes too. */
export const CONFIG_GENERATOR_VERSION = "2";

export interface DeviceBundle {
  bundle: Uint8Array;
  configYaml: string;
  caPem: string;
  caFingerprints: string[];
  inputs: ConfigInputs;
}

/** Renders nebula.yml from the inputs the ETag is computed over. */
export function renderConfig(inputs: ConfigInputs): string {
  return generateNebulaConfig({
    device: {
      ip: inputs.ip,
      prefixLength: inputs.prefixLength,
      isLighthouse: inputs.isLighthouse,
    },
    lighthouses: inputs.lighthouses.map(({ ip, endpoints }) => ({
      ip,
      endpoints,
    })),
    projectGroup: projectGroup(inputs.projectId),
    blocklist: inputs.blocklist,
  });
}

/** Loads the CA bundle: every unexpired, unretired CA of the project, newest expiry first. */
export async function loadCaBundle(
  db: Db,
  projectId: string,
  now: Date,
): Promise<{ pem: string; fingerprints: string[] }> {
  return caBundle(await loadProjectCas(db, projectId, now));
}

function caBundle(cas: ProjectCa[]): { pem: string; fingerprints: string[] } {
  return {
    pem: cas.map((ca) => ca.certPem).join(""),
    fingerprints: cas.map((ca) => ca.fingerprint),
  };
}

export interface BundleRequest {
  projectId: string;
  projectName: string;
  deviceId: string;
  certificatePem: string;
  notAfter: Date;
}

export async function buildDeviceBundle(
  db: Db,
  request: BundleRequest,
  now: Date,
  loadedCas?: ProjectCa[],
): Promise<DeviceBundle> {
  // Callers that signed just before pass the CAs they loaded: one query less each.
  const cas = loadedCas ?? await loadProjectCas(db, request.projectId, now);
  const inputs = await loadConfigInputs(
    db,
    request.projectId,
    request.deviceId,
    CONFIG_GENERATOR_VERSION,
    now,
    cas,
  );
  return await bundleFromInputs(request, inputs, cas, now);
}

/** Builds the bundle from config inputs the caller has already read. */
export async function bundleFromInputs(
  request: BundleRequest,
  inputs: ConfigInputs,
  cas: ProjectCa[],
  now: Date,
): Promise<DeviceBundle> {
  const configYaml = renderConfig(inputs);
  const ca = caBundle(cas);
  const readme = bundleReadme({
    projectName: request.projectName,
    deviceName: inputs.deviceName,
    ip: inputs.ip,
    prefixLength: inputs.prefixLength,
    notAfter: request.notAfter,
    isLighthouse: inputs.isLighthouse,
    listenPort: listenPort(
      {
        ip: inputs.ip,
        prefixLength: inputs.prefixLength,
        isLighthouse: inputs.isLighthouse,
      },
      inputs.lighthouses,
    ),
  });

  const bundle = await buildBundle({
    caPem: ca.pem,
    certificatePem: request.certificatePem,
    configYaml,
    readme,
    now,
  });
  return {
    bundle,
    configYaml,
    caPem: ca.pem,
    caFingerprints: ca.fingerprints,
    inputs,
  };
}
