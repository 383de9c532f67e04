/**
 * Helpers of the client tests: nebula-cert and nebula as oracles, and
 * configurations made by nebula-cert for the files the client checks.
 */
import JSZip from "jszip";

const decoder = new TextDecoder();

/** Result of a finished command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion and collects its output. */
export async function run(
  program: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CommandResult> {
  const output = await new Deno.Command(program, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();

  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Runs nebula-cert and fails with its output when it exits non-zero. */
export async function nebulaCert(args: string[]): Promise<string> {
  const result = await run("nebula-cert", args);
  if (result.code !== 0) {
    throw new Error(
      `nebula-cert ${args[0]} failed: ${result.stderr}${result.stdout}`,
    );
  }

  return result.stdout;
}

/** Runs `nebula -test -config <file>`; returns the result for asserting. */
export async function nebulaTest(config: string): Promise<CommandResult> {
  return await run("nebula", ["-test", "-config", config]);
}

/** Makes a CA with nebula-cert in `dir`. */
export async function makeCa(dir: string, name = "client test CA") {
  await nebulaCert([
    "ca",
    "-name",
    name,
    "-out-crt",
    `${dir}/ca.crt`,
    "-out-key",
    `${dir}/ca.key`,
    "-duration",
    "240h",
  ]);

  return { crt: `${dir}/ca.crt`, key: `${dir}/ca.key` };
}

/** Signs `pubFile` with the CA in `dir`; writes `<name>.crt`. */
export async function signHost(
  dir: string,
  name: string,
  ip: string,
  pubFile: string,
): Promise<string> {
  await nebulaCert([
    "sign",
    "-ca-crt",
    `${dir}/ca.crt`,
    "-ca-key",
    `${dir}/ca.key`,
    "-name",
    name,
    "-ip",
    ip,
    "-in-pub",
    pubFile,
    "-out-crt",
    `${dir}/${name}.crt`,
  ]);

  return await Deno.readTextFile(`${dir}/${name}.crt`);
}

/** Returns a client nebula.yml with relative pki paths, as the server's bundle ships it. */
export function sampleConfig(lighthouseIp = "10.77.0.1"): string {
  return `pki:
  ca: ca.crt
  cert: node.crt
  key: node.key
  disconnect_invalid: true
static_host_map:
  "${lighthouseIp}": ["127.0.0.1:4242"]
lighthouse:
  am_lighthouse: false
  hosts: ["${lighthouseIp}"]
listen:
  host: 0.0.0.0
  port: 0
tun:
  disabled: true
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: icmp
      host: any
`;
}

/** Zips bundle entries the way the server does (names only; modes are not checked here). */
export async function zipBundle(
  entries: Record<string, string>,
): Promise<Uint8Array> {
  const zip = new JSZip();
  for (const [name, text] of Object.entries(entries)) zip.file(name, text);

  return await zip.generateAsync({ type: "uint8array" });
}
