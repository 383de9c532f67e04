/**
 * The device's half of enrollment: key generation, registration, checked and
 * atomic installation of the bundle, status, renewal, config refresh and
 * release.
 */
import * as os from "node:os";
import * as path from "node:path";
import { type ApiOptions, MeshApi, NOT_MODIFIED } from "./api.ts";
import {
  type BundleFiles,
  checkBundle,
  type CheckedBundle,
  pointConfigAt,
  unzipBundle,
} from "./bundle.ts";
import { parseCertificates } from "./cert.ts";
import {
  ConfigFileError,
  DeviceNotFoundError,
  InvalidArgumentError,
  NotEnrolledError,
  UnexpectedResponseError,
} from "./errors.ts";
import {
  generateKeyPair,
  type KeyPair,
  keyPairFromPrivatePem,
  readRawKey,
} from "./keys.ts";
import {
  decodeBase64,
  sha256Hex,
  toHex,
  X25519_PUBLIC_KEY_TYPE,
} from "./pem.ts";
import {
  type ConfigFile,
  currentVersion,
  readConfigFile,
  removeConfiguration,
  writeConfiguration,
} from "./store.ts";

/** Name of the file that records what the client knows about the enrollment. */
export const STATE_FILE = "device.json";

/** Contents of device.json. */
export interface DeviceState {
  apiUrl: string;
  projectId: string;
  deviceId: string;
  deviceName: string;
  ip: string;
  prefixLength: number;
  isLighthouse: boolean;
  publicKeyPem: string;
  certificate: { fingerprint: string; notBefore: string; notAfter: string };
  caFingerprints: string[];
  /** ETag of the installed nebula.yml, sent as If-None-Match by refresh. */
  configEtag: string | null;
  /** Lowercase hex SHA-256 of the bundle zip as the server sent it. */
  bundleSha256: string | null;
  updatedAt: string;
}

/** Result of enroll and renew. */
export interface EnrollResult {
  state: DeviceState;
  directory: string;
  /** True when the server created the device (HTTP 201). */
  created: boolean;
  /** The bundle exactly as received. */
  bundle: Uint8Array;
}

/** Progress callback: one short line per step. */
export type ProgressListener = (step: string) => void;

/** Target directory of a project and the progress listener. */
export interface TargetOptions {
  projectId: string;
  /** Overrides `~/.vidsync/nebula/<projectId>`. */
  directory?: string;
  onProgress?: ProgressListener;
}

export interface EnrollOptions extends TargetOptions {
  deviceName: string;
  /** Device id (uuid); defaults to the enrolled one in the directory, else a new one. */
  deviceId?: string;
  lighthouse?: boolean;
  /** Bundle transfer: base64 inside JSON (default) or raw `application/zip`. */
  format?: "json" | "zip";
}

export interface RenewOptions extends TargetOptions {
  /** Generates a new key pair and has the certificate issued for it. */
  rotateKey?: boolean;
}

/** Result of refresh. */
export interface RefreshResult {
  changed: boolean;
  configEtag: string | null;
  caChanged: boolean;
  state: DeviceState;
}

/** Result of status: the server.s record and the checked local files. */
export interface StatusResult {
  server: ServerStatus;
  local: DeviceState;
  directory: string;
  /** The installed certificate is the server's latest one. */
  certificateCurrent: boolean;
}

/** Response body of GET /nebula-status. */
export interface ServerStatus {
  projectId: string;
  deviceId: string;
  deviceName: string;
  ownerId: string;
  ip: string;
  prefixLength: number;
  isLighthouse: boolean;
  lastSeen: string | null;
  certificate: {
    fingerprint: string;
    notBefore: string;
    notAfter: string;
    revokedAt: string | null;
  };
  ca: { fingerprint: string; notAfter: string };
}

/** Response body of POST /nebula-release. */
export interface ReleaseResult {
  projectId: string;
  deviceId: string;
  ip: string | null;
  releasedAt: string | null;
  quarantinedUntil: string | null;
  revokedFingerprints: string[];
  /** Local files were removed. */
  removed: boolean;
}

interface RegisterResponse {
  projectId: string;
  deviceId: string;
  deviceName: string;
  ip: string;
  prefixLength: number;
  isLighthouse: boolean;
  certificate: { fingerprint: string; notBefore: string; notAfter: string };
  caFingerprints: string[];
  bundle: string;
}

/** Default configuration directory of a project: `~/.vidsync/nebula/<projectId>`. */
export function defaultDirectory(projectId: string): string {
  return path.join(os.homedir(), ".vidsync", "nebula", projectId);
}

const UUID_PATTERN =
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkUuid(field: string, value: string): void {
  if (!UUID_PATTERN.test(value)) {
    throw new InvalidArgumentError(field, `"${value}" is not a uuid`);
  }
}

function query(projectId: string): string {
  return `projectId=${encodeURIComponent(projectId)}`;
}

/** Client of one VidSync Mesh deployment for one user. */
export class MeshClient {
  readonly api: MeshApi;

  constructor(options: ApiOptions) {
    this.api = new MeshApi(options);
  }

  /** Signs in with email and password (Supabase Auth). */
  async signIn(email: string, password: string): Promise<void> {
    await this.api.signIn(email, password);
  }

  /** Resolves the directory of a project's files to an absolute path. */
  directoryOf(options: TargetOptions): string {
    checkUuid("projectId", options.projectId);

    return path.resolve(
      options.directory ?? defaultDirectory(options.projectId),
    );
  }

  /** Reads device.json of the installed configuration; null when there is none. */
  async readState(directory: string): Promise<DeviceState | null> {
    const text = await readConfigFile(directory, STATE_FILE).catch((error) => {
      if ((error as { code?: string }).code === "ENOENT") return null;
      throw error;
    });
    if (text === null) return null;

    try {
      return JSON.parse(text) as DeviceState;
    } catch {
      throw new ConfigFileError(
        STATE_FILE,
        `in ${directory} is not valid JSON`,
      );
    }
  }

  async #requireState(directory: string): Promise<DeviceState> {
    const state = await this.readState(directory);
    if (!state) throw new NotEnrolledError(directory);

    return state;
  }

  /** Loads node.key and checks it is the key device.json recorded; a mismatch blames node.key. */
  async #loadKey(directory: string, state: DeviceState): Promise<KeyPair> {
    const pem = await readConfigFile(directory, "node.key");
    const pair = pem ? await keyPairFromPrivatePem(pem) : null;
    if (!pair) {
      throw new ConfigFileError(
        path.join(directory, "node.key"),
        "is missing or not a NEBULA X25519 PRIVATE KEY",
      );
    }
    const recorded = readRawKey(state.publicKeyPem, X25519_PUBLIC_KEY_TYPE);
    if (!recorded || toHex(recorded) !== toHex(pair.publicKey)) {
      throw new ConfigFileError(
        path.join(directory, "node.key"),
        "does not match the public key this device enrolled with; enroll again to replace it",
        "key_pair_mismatch",
      );
    }

    return pair;
  }

  /**
   * Registers the device and installs its bundle. A device enrolled before in
   * the same directory keeps its id and key, so the server returns the same IP.
   */
  async enroll(options: EnrollOptions): Promise<EnrollResult> {
    const directory = this.directoryOf(options);
    const progress = options.onProgress ?? (() => {});
    const previous = await this.readState(directory).catch(() => null);
    const deviceId = options.deviceId ?? previous?.deviceId ??
      crypto.randomUUID();
    checkUuid("deviceId", deviceId);

    progress("Checking the local key pair");
    const reusable = previous && previous.deviceId === deviceId
      ? await this.#loadKey(directory, previous).catch(() => null)
      : null;
    const keyPair = reusable ?? await generateKeyPair();
    progress(
      reusable ? "Reusing the existing key pair" : "Generated a new key pair",
    );

    progress(`Registering device ${deviceId} in project ${options.projectId}`);
    const body = {
      projectId: options.projectId,
      deviceId,
      deviceName: options.deviceName,
      publicKey: keyPair.publicKeyPem,
      ...(options.lighthouse === undefined
        ? {}
        : { lighthouse: options.lighthouse }),
    };
    const received = await this.#requestBundle(
      "nebula-register",
      body,
      options.format,
    );

    return await this.#install(
      directory,
      keyPair,
      received,
      previous?.configEtag ?? null,
      progress,
    );
  }

  /**
   * Renews the host certificate in place, optionally with a new key pair.
   * Throws NotFoundError (code not_found) while the server has no nebula-renew function.
   */
  async renew(options: RenewOptions): Promise<EnrollResult> {
    const directory = this.directoryOf(options);
    const progress = options.onProgress ?? (() => {});
    const state = await this.#requireState(directory);
    const current = await this.#loadKey(directory, state);
    const keyPair = options.rotateKey ? await generateKeyPair() : current;
    progress(
      options.rotateKey
        ? "Generated a new key pair"
        : "Keeping the current key pair",
    );

    progress(`Renewing the certificate of device ${state.deviceId}`);
    const body = {
      projectId: state.projectId,
      deviceId: state.deviceId,
      ...(options.rotateKey ? { publicKey: keyPair.publicKeyPem } : {}),
    };
    const received = await this.#requestBundle("nebula-renew", body, "json");

    return await this.#install(
      directory,
      keyPair,
      received,
      state.configEtag,
      progress,
    );
  }

  async #requestBundle(
    name: string,
    body: Record<string, unknown>,
    format: "json" | "zip" = "json",
  ): Promise<
    { response: RegisterResponse; bundle: Uint8Array; created: boolean }
  > {
    if (format === "zip") return await this.#requestZip(name, body);

    const answer = await this.api.invoke<RegisterResponse>(name, { body });
    const response = answer.data;
    if (response === NOT_MODIFIED || typeof response?.bundle !== "string") {
      throw new UnexpectedResponseError(`${name} returned no bundle`);
    }

    return {
      response,
      bundle: decodeBase64(response.bundle),
      created: answer.status === 201,
    };
  }

  async #requestZip(
    name: string,
    body: Record<string, unknown>,
  ): Promise<
    { response: RegisterResponse; bundle: Uint8Array; created: boolean }
  > {
    const answer = await this.api.invoke<Blob>(name, {
      body,
      headers: { Accept: "application/zip" },
    });
    if (!(answer.data instanceof Blob)) {
      throw new UnexpectedResponseError(
        `${name} did not return application/zip`,
      );
    }

    const bundle = new Uint8Array(await answer.data.arrayBuffer());
    const files = await unzipBundle(bundle);
    const [certificate] = await parseCertificates(files.certPem);
    const cas = await parseCertificates(files.caPem);
    const [ip, prefix] =
      (answer.headers.get("x-nebula-ip") ?? certificate.ip ?? "").split("/");
    const response: RegisterResponse = {
      projectId: String(body.projectId),
      deviceId: String(body.deviceId),
      deviceName: certificate.name,
      ip,
      prefixLength: Number(prefix ?? certificate.ip?.split("/")[1]),
      isLighthouse: /am_lighthouse:\s*true/.test(files.nebulaYml),
      certificate: {
        fingerprint: answer.headers.get("x-nebula-fingerprint") ??
          certificate.fingerprint,
        notBefore: certificate.notBefore.toISOString(),
        notAfter: certificate.notAfter.toISOString(),
      },
      caFingerprints: cas.map((ca) => ca.fingerprint),
      bundle: "",
    };

    return { response, bundle, created: answer.status === 201 };
  }

  async #install(
    directory: string,
    keyPair: KeyPair,
    received: {
      response: RegisterResponse;
      bundle: Uint8Array;
      created: boolean;
    },
    configEtag: string | null,
    progress: ProgressListener,
  ): Promise<EnrollResult> {
    progress("Checking the bundle against the key pair");
    const files = await unzipBundle(received.bundle);
    const checked = await checkBundle(files, keyPair.publicKey);
    checkAgreement(received.response, checked);

    const state: DeviceState = {
      apiUrl: this.api.url,
      projectId: received.response.projectId,
      deviceId: received.response.deviceId,
      deviceName: received.response.deviceName,
      ip: checked.certificate.ip!.split("/")[0],
      prefixLength: Number(checked.certificate.ip!.split("/")[1]),
      isLighthouse: received.response.isLighthouse,
      publicKeyPem: keyPair.publicKeyPem,
      certificate: {
        fingerprint: checked.certificate.fingerprint,
        notBefore: checked.certificate.notBefore.toISOString(),
        notAfter: checked.certificate.notAfter.toISOString(),
      },
      caFingerprints: checked.cas.map((ca) => ca.fingerprint),
      configEtag,
      bundleSha256: await sha256Hex(received.bundle),
      updatedAt: new Date().toISOString(),
    };
    progress(`Writing the configuration to ${directory}`);
    await writeConfiguration(
      directory,
      configFiles(directory, files, keyPair, state),
    );
    progress(`Enrolled with overlay IP ${state.ip}/${state.prefixLength}`);

    return {
      state,
      directory,
      created: received.created,
      bundle: received.bundle,
    };
  }

  /** Reads the device's status from the server and checks the local files against it. */
  async status(options: TargetOptions): Promise<StatusResult> {
    const directory = this.directoryOf(options);
    const state = await this.#requireState(directory);
    const keyPair = await this.#loadKey(directory, state);
    // node.key matches the recorded key, so a mismatch here is node.crt's fault.
    await checkBundle(await readInstalled(directory), keyPair.publicKey);

    options.onProgress?.(`Reading the status of device ${state.deviceId}`);
    const answer = await this.api.invoke<ServerStatus>(
      `nebula-status/${state.deviceId}?${query(state.projectId)}`,
      { method: "GET" },
    );
    const server = answer.data as ServerStatus;

    return {
      server,
      local: state,
      directory,
      certificateCurrent:
        server.certificate?.fingerprint === state.certificate.fingerprint,
    };
  }

  /**
   * Fetches nebula.yml with If-None-Match and the CA bundle, and installs a
   * new version only when either changed. The key and certificate stay.
   * Throws NotFoundError (code not_found) while the server has no nebula-config function.
   */
  async refresh(options: TargetOptions): Promise<RefreshResult> {
    const directory = this.directoryOf(options);
    const progress = options.onProgress ?? (() => {});
    const state = await this.#requireState(directory);
    const keyPair = await this.#loadKey(directory, state);
    const installed = await readInstalled(directory);

    progress("Fetching nebula.yml");
    const headers: Record<string, string> = state.configEtag
      ? { "If-None-Match": state.configEtag }
      : {};
    const config = await this.api.invoke<string>(
      `nebula-config/${state.deviceId}?${query(state.projectId)}`,
      { method: "GET", headers },
    );
    progress("Fetching the CA bundle");
    const caPem = await this.fetchCaBundle(state.projectId);

    const configChanged = config.data !== NOT_MODIFIED;
    const caChanged = caPem !== installed.caPem;
    if (!configChanged && !caChanged) {
      progress("Configuration is up to date");
      return { changed: false, configEtag: state.configEtag, caChanged, state };
    }

    const files: BundleFiles = {
      ...installed,
      caPem,
      nebulaYml: configChanged ? String(config.data) : installed.nebulaYml,
    };
    const checked = await checkBundle(files, keyPair.publicKey);
    const next: DeviceState = {
      ...state,
      caFingerprints: checked.cas.map((ca) => ca.fingerprint),
      configEtag: configChanged ? config.headers.get("etag") : state.configEtag,
      updatedAt: new Date().toISOString(),
    };
    progress(`Writing the configuration to ${directory}`);
    await writeConfiguration(
      directory,
      configFiles(directory, files, keyPair, next),
    );

    return {
      changed: true,
      configEtag: next.configEtag,
      caChanged,
      state: next,
    };
  }

  /** Releases the device's address on the server, then removes the local files. */
  async release(options: TargetOptions): Promise<ReleaseResult> {
    const directory = this.directoryOf(options);
    const progress = options.onProgress ?? (() => {});
    const state = await this.#requireState(directory);

    progress(`Releasing device ${state.deviceId}`);
    let released: Omit<ReleaseResult, "removed">;
    try {
      const answer = await this.api.invoke<Omit<ReleaseResult, "removed">>(
        `nebula-release/${state.deviceId}?${query(state.projectId)}`,
      );
      released = answer.data as Omit<ReleaseResult, "removed">;
    } catch (error) {
      // The server forgot the device already; the local files are all that is left.
      if (!(error instanceof DeviceNotFoundError)) throw error;
      released = {
        projectId: state.projectId,
        deviceId: state.deviceId,
        ip: null,
        releasedAt: null,
        quarantinedUntil: null,
        revokedFingerprints: [],
      };
    }

    progress(`Removing ${directory}`);
    const removed = await removeConfiguration(directory);

    return { ...released, removed };
  }

  /** Fetches the project's CA bundle (no sign-in needed). */
  async fetchCaBundle(projectId: string): Promise<string> {
    checkUuid("projectId", projectId);
    const answer = await this.api.invoke<string | Blob>(
      `nebula-ca?${query(projectId)}`,
      {
        method: "GET",
        auth: false,
      },
    );
    const data = answer.data;
    const text = data instanceof Blob ? await data.text() : String(data);
    if (!text.includes("-----BEGIN NEBULA CERTIFICATE-----")) {
      throw new UnexpectedResponseError(
        "nebula-ca returned no NEBULA CERTIFICATE block",
      );
    }

    return text;
  }
}

/** Checks that the JSON fields of a register response describe the certificate in the bundle. */
function checkAgreement(
  response: RegisterResponse,
  checked: CheckedBundle,
): void {
  const expected = `${response.ip}/${response.prefixLength}`;
  if (checked.certificate.ip !== expected) {
    throw new ConfigFileError(
      "node.crt",
      `carries IP ${checked.certificate.ip}, but the server allocated ${expected}`,
    );
  }
  if (checked.certificate.fingerprint !== response.certificate.fingerprint) {
    throw new ConfigFileError(
      "node.crt",
      `has fingerprint ${checked.certificate.fingerprint}, but the server reported ${response.certificate.fingerprint}`,
    );
  }
}

async function readInstalled(directory: string): Promise<BundleFiles> {
  const version = await currentVersion(directory);
  if (!version) throw new NotEnrolledError(directory);

  const read = async (name: string) =>
    (await readConfigFile(directory, name)) ?? "";
  return {
    caPem: await read("ca.crt"),
    certPem: await read("node.crt"),
    nebulaYml: await read("nebula.yml"),
    readme: await read("README.md").catch(() => ""),
  };
}

function configFiles(
  directory: string,
  files: BundleFiles,
  keyPair: KeyPair,
  state: DeviceState,
): Record<string, ConfigFile> {
  return {
    "ca.crt": { content: files.caPem, mode: 0o644 },
    "node.crt": { content: files.certPem, mode: 0o644 },
    "node.key": { content: keyPair.privateKeyPem, mode: 0o600 },
    "nebula.yml": {
      content: pointConfigAt(files.nebulaYml, directory),
      mode: 0o644,
    },
    "README.md": { content: files.readme, mode: 0o644 },
    [STATE_FILE]: {
      content: JSON.stringify(state, null, 2) + "\n",
      mode: 0o644,
    },
  };
}
