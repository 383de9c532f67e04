/** Runs Debian's nebula-cert 1.6.1, the reference implementation the signer is checked against. */

export async function nebulaCert(
  args: string[],
  cwd?: string,
): Promise<string> {
  const output = await new Deno.Command("nebula-cert", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) +
    new TextDecoder().decode(output.stderr);
  if (!output.success) {
    throw new Error(`nebula-cert ${args.join(" ")} failed: ${text}`);
  }
  return text;
}

/** Returns nebula-cert's exit status and output without throwing. */
export async function tryNebulaCert(
  args: string[],
): Promise<{ success: boolean; output: string }> {
  const output = await new Deno.Command("nebula-cert", {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    success: output.success,
    output: new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr),
  };
}

export interface PrintedDetails {
  name: string;
  ips: string[];
  subnets: string[];
  groups: string[];
  notBefore: string;
  notAfter: string;
  publicKey: string;
  isCa: boolean;
  issuer: string;
}

/** `nebula-cert print -json` of the first certificate in `path`. */
export async function printCertificate(
  path: string,
): Promise<{ details: PrintedDetails; fingerprint: string }> {
  const text = await nebulaCert(["print", "-json", "-path", path]);
  return JSON.parse(text.split("\n")[0]);
}
