/**
 * Unpacks and checks an enrollment bundle before anything is written: the
 * host certificate must carry the device's public key and be issued by a CA
 * of the bundle, and `nebula.yml` must parse. Each failure names the file at
 * fault.
 */
import JSZip from "jszip";
import * as path from "node:path";
import { parseDocument } from "yaml";
import { type CertificateInfo, parseCertificates } from "./cert.ts";
import { ConfigFileError, KeyPairMismatchError } from "./errors.ts";
import { toHex } from "./pem.ts";

/** The files of a bundle as text. */
export interface BundleFiles {
  caPem: string;
  certPem: string;
  nebulaYml: string;
  readme: string;
}

/** Bundle files and their parsed certificates. */
export interface CheckedBundle extends BundleFiles {
  certificate: CertificateInfo;
  cas: CertificateInfo[];
}

const REQUIRED_ENTRIES = ["ca.crt", "node.crt", "nebula.yml"] as const;

/** Reads the entries of a bundle zip; throws ConfigFileError naming a missing entry. */
export async function unzipBundle(bytes: Uint8Array): Promise<BundleFiles> {
  let zip: JSZip;
  try {
    zip = await JSZip.loadAsync(bytes);
  } catch (error) {
    throw new ConfigFileError(
      "bundle.zip",
      `is not a valid zip archive (${(error as Error).message})`,
      "invalid_bundle",
    );
  }

  const text: Record<string, string> = {};
  for (const name of [...REQUIRED_ENTRIES, "README.md"]) {
    const entry = zip.file(name);
    if (!entry && name !== "README.md") {
      throw new ConfigFileError(
        name,
        "is missing from the bundle",
        "invalid_bundle",
      );
    }
    text[name] = entry ? await entry.async("string") : "";
  }

  return {
    caPem: text["ca.crt"],
    certPem: text["node.crt"],
    nebulaYml: text["nebula.yml"],
    readme: text["README.md"],
  };
}

async function parseOrFail(
  file: string,
  pem: string,
): Promise<CertificateInfo[]> {
  let certificates: CertificateInfo[];
  try {
    certificates = await parseCertificates(pem);
  } catch (error) {
    throw new ConfigFileError(
      file,
      `contains a malformed Nebula certificate (${(error as Error).message})`,
    );
  }
  if (certificates.length === 0) {
    throw new ConfigFileError(file, "contains no NEBULA CERTIFICATE block");
  }

  return certificates;
}

/**
 * Checks that the certificate in `node.crt` was issued for `publicKey` by a
 * CA in `ca.crt`. `keyFile` names the key file that a mismatch is blamed on
 * when `blame` is "key", e.g. a node.key replaced on disk.
 */
export async function checkBundle(
  files: BundleFiles,
  publicKey: Uint8Array,
  blame: "certificate" | "key" = "certificate",
  keyFile = "node.key",
): Promise<CheckedBundle> {
  const [certificate] = await parseOrFail("node.crt", files.certPem);
  const cas = await parseOrFail("ca.crt", files.caPem);

  if (toHex(certificate.publicKey) !== toHex(publicKey)) {
    const message = `public key ${
      toHex(publicKey)
    } does not match the key in node.crt (${toHex(certificate.publicKey)})`;
    throw blame === "certificate"
      ? new KeyPairMismatchError(
        "node.crt",
        `was issued for another key than this device's; ${message}`,
      )
      : new KeyPairMismatchError(
        keyFile,
        `is not the private key of node.crt; ${message}`,
      );
  }
  if (!cas.some((ca) => ca.fingerprint === certificate.issuer)) {
    throw new ConfigFileError(
      "node.crt",
      `is issued by CA ${certificate.issuer}, which is not in ca.crt`,
    );
  }
  checkYaml(files.nebulaYml);

  return { ...files, certificate, cas };
}

function checkYaml(text: string): void {
  const document = parseDocument(text);
  if (document.errors.length > 0) {
    throw new ConfigFileError(
      "nebula.yml",
      `is not valid YAML (${document.errors[0].message})`,
    );
  }
  if (!document.has("pki")) {
    throw new ConfigFileError("nebula.yml", "has no pki section");
  }
}

/**
 * Points `pki.ca`, `pki.cert` and `pki.key` at the absolute paths of the files
 * in `directory`, because Nebula resolves relative paths against its working
 * directory. Inline PEM values of `pki.ca` and `pki.cert` are kept.
 */
export function pointConfigAt(text: string, directory: string): string {
  const document = parseDocument(text);
  const entries = [["ca", "ca.crt"], ["cert", "node.crt"], [
    "key",
    "node.key",
  ]] as const;
  for (const [key, file] of entries) {
    const value = document.getIn(["pki", key]);
    if (
      key !== "key" && typeof value === "string" && value.includes("-----BEGIN")
    ) {
      continue;
    }
    document.setIn(["pki", key], path.join(directory, file));
  }

  return document.toString();
}
