/**
 * The ZIP a device receives. Entries are made for UNIX with explicit
 * regular-file type bits (jszip drops modes otherwise), in a fixed order with
 * a fixed date, so equal inputs give equal bytes. Names are plain, with no
 * directories, so extraction cannot escape its folder.
 */
import JSZip from "jszip";
import { checkCaBundle, readCertificatePem } from "../pki/ca.ts";
import { decodePemBlocks } from "../pki/pem.ts";

/** `S_IFREG | 0644`: jszip needs the file-type bits along with the permissions. */
const REGULAR_FILE_0644 = 0o100644;
const FIXED_DATE = new Date("2020-01-01T00:00:00Z");

export interface BundleInput {
  caPem: string;
  certificatePem: string;
  configYaml: string;
  readme: string;
  /** When given, a CA that is not valid at this time is rejected. */
  now?: Date;
}

export const BUNDLE_ENTRIES = [
  "ca.crt",
  "node.crt",
  "nebula.yml",
  "README.md",
] as const;

/**
 * Checks that the certificates fit together before they ship: a v1 CA
 * bundle without expired CAs, and one host certificate issued by one of them.
 */
async function checkCertificates(input: BundleInput): Promise<void> {
  const caFingerprints = await checkCaBundle(input.caPem, input.now);
  if (decodePemBlocks(input.certificatePem).length !== 1) {
    throw new RangeError("node.crt must hold exactly one certificate");
  }

  const host = await readCertificatePem(input.certificatePem);
  if (host.certificate.details.isCa) {
    throw new RangeError("node.crt must be a host certificate, not a CA");
  }
  if (!caFingerprints.includes(host.certificate.details.issuer)) {
    throw new RangeError(
      `node.crt was issued by ${host.certificate.details.issuer}, which is not in ca.crt`,
    );
  }
}

/** Builds the bundle ZIP; throws RangeError when the certificates do not fit together. */
export async function buildBundle(input: BundleInput): Promise<Uint8Array> {
  await checkCertificates(input);

  const zip = new JSZip();
  const contents = [
    input.caPem,
    input.certificatePem,
    input.configYaml,
    input.readme,
  ];
  BUNDLE_ENTRIES.forEach((name, index) => {
    zip.file(name, contents[index], {
      date: FIXED_DATE,
      unixPermissions: REGULAR_FILE_0644,
      createFolders: false,
    });
  });
  return await zip.generateAsync({
    type: "uint8array",
    platform: "UNIX",
    compression: "DEFLATE",
    compressionOptions: { level: 6 },
  });
}

export interface BundleReadmeInput {
  projectName: string;
  deviceName: string;
  ip: string;
  prefixLength: number;
  notAfter: Date;
  isLighthouse: boolean;
  /** UDP port in `listen.port` of nebula.yml; 0 for a random port. */
  listenPort: number;
}

function portAdvice(input: BundleReadmeInput): string {
  if (input.isLighthouse) {
    return `This lighthouse listens on UDP port ${input.listenPort}, the port of its
endpoints that every device dials. Let UDP traffic to that port through the
host's firewall, and forward the same port number on a NAT router.`;
  }
  return `This device listens on a random UDP port (\`listen.port: 0\`) and reaches
its peers through the project's lighthouses, so it needs no open port.`;
}

/** Writes the README placed in the bundle: where the key goes and how to start Nebula. */
export function bundleReadme(input: BundleReadmeInput): string {
  const role = input.isLighthouse ? "lighthouse" : "device";
  return `# Nebula bundle for ${JSON.stringify(input.deviceName)}

Project: ${input.projectName}
Overlay address: ${input.ip}/${input.prefixLength} (${role})
Certificate valid until: ${input.notAfter.toISOString()}

Files:

- \`ca.crt\`: the project's CA certificates
- \`node.crt\`: this ${role}'s certificate, signed for its public key
- \`nebula.yml\`: the configuration
- \`README.md\`: this file

The private key is not in this bundle: it never left the device. Save it as
\`node.key\` beside \`nebula.yml\` (the path is \`pki.key\` in \`nebula.yml\`),
readable only by the user that runs Nebula. Nebula refuses to start with
"private key is not a pair with public key" when the key does not belong to
\`node.crt\`.

## Linux

    sudo install -m 0600 /path/to/your.key node.key
    sudo nebula -config nebula.yml

## macOS

    chmod 600 node.key
    sudo nebula -config nebula.yml

## Windows (PowerShell as Administrator)

    icacls node.key /inheritance:r /grant:r "$env:USERNAME:R"
    .\\nebula.exe -config nebula.yml

Check the configuration without starting Nebula: \`nebula -test -config nebula.yml\`.
Syncthing then reaches the project's other devices at their overlay addresses
on port 22000.

## Ports

${portAdvice(input)}
`;
}
