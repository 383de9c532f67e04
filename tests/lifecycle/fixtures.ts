/**
 * Projects, CAs, keys and certificates for lifecycle tests, made by the real
 * `nebula-cert` (Nebula 1.6.1). `nebula-cert sign` always starts a
 * certificate at the wall-clock time, so tests that sign use the real clock
 * and move p_now forward from there.
 */
import type { Db } from "../../shared/db/port.ts";
import type {
  HostCertificateRequest,
  HostCertificateSigner,
  SignedHostCertificate,
} from "../../shared/lifecycle/mod.ts";

export interface TestCa {
  dir: string;
  fingerprint: string;
  certPem: string;
  notBefore: Date;
  notAfter: Date;
}

export interface TestKey {
  pem: string;
  raw: Uint8Array;
}

export interface TestProject {
  projectId: string;
  ownerId: string;
  ca: TestCa;
  sign: HostCertificateSigner;
}

interface PrintedCertificate {
  details: {
    notBefore: string;
    notAfter: string;
    publicKey: string;
    ips: string[];
  };
  fingerprint: string;
}

async function nebulaCert(args: string[]): Promise<string> {
  const output = await new Deno.Command("nebula-cert", {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) +
    new TextDecoder().decode(output.stderr);
  if (!output.success) {
    throw new Error(`nebula-cert ${args[0]} failed: ${text}`);
  }
  return text;
}

/** Parses `nebula-cert print -json` for one certificate file. */
export async function printCertificate(
  path: string,
): Promise<PrintedCertificate> {
  return JSON.parse(await nebulaCert(["print", "-json", "-path", path]));
}

const caDirs: string[] = [];

// Signers read the CA key file until the test ends, so CA directories are
// removed when the process exits.
globalThis.addEventListener("unload", () => {
  for (const dir of caDirs) Deno.removeSync(dir, { recursive: true });
});

/** Creates a CA with nebula-cert in a temporary directory. */
export async function createCa(durationHours: number): Promise<TestCa> {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-ca-" });
  caDirs.push(dir);
  await nebulaCert([
    "ca",
    "-name",
    "lifecycle test CA",
    "-duration",
    `${durationHours}h`,
    "-out-crt",
    `${dir}/ca.crt`,
    "-out-key",
    `${dir}/ca.key`,
  ]);
  const printed = await printCertificate(`${dir}/ca.crt`);

  return {
    dir,
    fingerprint: printed.fingerprint,
    certPem: await Deno.readTextFile(`${dir}/ca.crt`),
    notBefore: new Date(printed.details.notBefore),
    notAfter: new Date(printed.details.notAfter),
  };
}

/** Generates an X25519 key pair with nebula-cert and returns the public half. */
export async function createKey(): Promise<TestKey> {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-key-" });
  try {
    await nebulaCert([
      "keygen",
      "-out-key",
      `${dir}/host.key`,
      "-out-pub",
      `${dir}/host.pub`,
    ]);
    const pem = await Deno.readTextFile(`${dir}/host.pub`);
    const body = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
    return {
      pem,
      raw: Uint8Array.from(atob(body), (char) => char.charCodeAt(0)),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function publicKeyPem(raw: Uint8Array): string {
  const body = btoa(String.fromCharCode(...raw));
  return `-----BEGIN NEBULA X25519 PUBLIC KEY-----\n${body}\n-----END NEBULA X25519 PUBLIC KEY-----\n`;
}

/**
 * A signer that runs `nebula-cert sign` with the CA's key file and checks the
 * result with `nebula-cert verify`. It signs for the requested length. When
 * that reaches the CA's NotAfter, it leaves -duration out, so nebula-cert
 * ends the certificate one second before the CA.
 */
export function nebulaCertSigner(ca: TestCa): HostCertificateSigner {
  return async (
    request: HostCertificateRequest,
  ): Promise<SignedHostCertificate> => {
    const dir = await Deno.makeTempDir({ prefix: "vidsync-sign-" });
    try {
      await Deno.writeTextFile(
        `${dir}/host.pub`,
        publicKeyPem(request.publicKey),
      );
      const seconds = Math.floor(
        (request.notAfter.getTime() - request.notBefore.getTime()) / 1000,
      );
      const capped = request.notAfter.getTime() >= ca.notAfter.getTime();
      await nebulaCert([
        "sign",
        "-ca-crt",
        `${ca.dir}/ca.crt`,
        "-ca-key",
        `${ca.dir}/ca.key`,
        "-name",
        request.name,
        "-ip",
        `${request.ip}/${request.prefixLength}`,
        "-groups",
        request.groups.join(","),
        "-in-pub",
        `${dir}/host.pub`,
        ...(capped ? [] : ["-duration", `${seconds}s`]),
        "-out-crt",
        `${dir}/host.crt`,
      ]);
      await nebulaCert([
        "verify",
        "-ca",
        `${ca.dir}/ca.crt`,
        "-crt",
        `${dir}/host.crt`,
      ]);
      const printed = await printCertificate(`${dir}/host.crt`);

      return {
        pem: await Deno.readTextFile(`${dir}/host.crt`),
        fingerprint: printed.fingerprint,
        notBefore: new Date(printed.details.notBefore),
        notAfter: new Date(printed.details.notAfter),
      };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };
}

export interface ProjectOptions {
  cidr: string;
  hostCertLifetime?: string;
  deviceIdleTimeout?: string | null;
  caDurationHours?: number;
  /** Overlay address reserved for a lighthouse. */
  lighthouseIp?: string;
}

/**
 * Inserts an owner, a project with its CA row and a filled pool. The CA's
 * private key stays in nebula-cert's key file, which the test signer reads,
 * so the sealed-key columns hold random bytes that nothing decrypts.
 */
export async function createProject(
  db: Db,
  options: ProjectOptions,
): Promise<TestProject> {
  const ca = await createCa(options.caDurationHours ?? 24 * 365);
  const [owner] = await db.query<{ id: string }>(
    "insert into auth.users (email) values ($1) returning id",
    [`owner-${crypto.randomUUID()}@example.test`],
  );
  const [project] = await db.query<{ id: string }>(
    `insert into public.projects (name, cidr, created_by, host_cert_lifetime, device_idle_timeout)
     values ('lifecycle', $1::cidr, $2, $3::interval, $4::interval) returning id`,
    [
      options.cidr,
      owner.id,
      options.hostCertLifetime ?? "30 days",
      options.deviceIdleTimeout === undefined
        ? "7 days"
        : options.deviceIdleTimeout,
    ],
  );
  await db.query(
    "insert into public.project_members (project_id, user_id, role) values ($1, $2, 'owner')",
    [project.id, owner.id],
  );

  const reserved = options.lighthouseIp ? [options.lighthouseIp] : [];
  if (options.lighthouseIp) {
    await db.query(
      `insert into public.nebula_lighthouses (project_id, ip, name, endpoints)
       values ($1, $2::inet, 'lh1', array['192.0.2.1:4242'])`,
      [project.id, options.lighthouseIp],
    );
  }
  await db.query(
    "select public.populate_nebula_ip_pool($1, $2::cidr, $3::inet[])",
    [
      project.id,
      options.cidr,
      reserved,
    ],
  );
  await db.query(
    `insert into public.nebula_cas (project_id, cert_pem, fingerprint, not_before, not_after,
       encrypted_private_key, key_nonce)
     values ($1, $2, $3, $4, $5,
       decode(md5(random()::text) || md5(random()::text), 'hex'),
       substring(decode(md5(random()::text), 'hex') from 1 for 12))`,
    [project.id, ca.certPem, ca.fingerprint, ca.notBefore, ca.notAfter],
  );

  return {
    projectId: project.id,
    ownerId: owner.id,
    ca,
    sign: nebulaCertSigner(ca),
  };
}

export interface TestDevice {
  deviceId: string;
  ip: string;
  fingerprint: string;
  notAfter: Date;
  key: TestKey;
}

/**
 * Enrolls a device the way registration does: device row, address (the
 * lighthouse address when `lighthouse` is set), certificate for its key.
 */
export async function enrollDevice(
  db: Db,
  project: TestProject,
  options: { ownerId?: string; lighthouse?: string; now?: Date } = {},
): Promise<TestDevice> {
  const deviceId = crypto.randomUUID();
  const key = await createKey();
  const now = options.now ?? new Date();
  await db.query(
    `insert into public.user_devices (project_id, id, owner_id, name, public_key, created_at, updated_at)
     values ($1, $2, $3, $4, decode($5, 'base64'), $6, $6)`,
    [
      project.projectId,
      deviceId,
      options.ownerId ?? project.ownerId,
      `device-${deviceId.slice(0, 8)}`,
      btoa(String.fromCharCode(...key.raw)),
      now,
    ],
  );

  const [allocation] = options.lighthouse
    ? await db.query<{ ip: string }>(
      "select host(public.assign_nebula_lighthouse_ip($1, $2, $3::inet, $4, $5)) as ip",
      [project.projectId, deviceId, options.lighthouse, project.ownerId, now],
    )
    : await db.query<{ ip: string }>(
      "select host(public.allocate_nebula_ip($1, $2, $3, $4)) as ip",
      [project.projectId, deviceId, project.ownerId, now],
    );
  const [{ prefix }] = await db.query<{ prefix: number }>(
    "select masklen(cidr) as prefix from public.projects where id = $1",
    [project.projectId],
  );

  const signed = await project.sign({
    projectId: project.projectId,
    ca: { id: "", ...project.ca },
    name: `device-${deviceId.slice(0, 8)}`,
    ip: allocation.ip,
    prefixLength: prefix,
    groups: ["vidsync"],
    publicKey: key.raw,
    notBefore: new Date(),
    // Shorter than the projects' 30 days, so a renewal makes a new certificate.
    notAfter: new Date(Date.now() + 29 * 86400_000),
  });
  await db.query(
    `insert into public.nebula_certificates (fingerprint, project_id, device_id, ca_fingerprint,
       ip, name, groups, public_key, not_before, not_after)
     select $1, $2, $3, $4, $5::inet, d.name, array['vidsync'], d.public_key, $6, $7
     from public.user_devices d where d.project_id = $2 and d.id = $3`,
    [
      signed.fingerprint,
      project.projectId,
      deviceId,
      project.ca.fingerprint,
      `${allocation.ip}/${prefix}`,
      signed.notBefore,
      signed.notAfter,
    ],
  );

  return {
    deviceId,
    ip: allocation.ip,
    fingerprint: signed.fingerprint,
    notAfter: signed.notAfter,
    key,
  };
}
