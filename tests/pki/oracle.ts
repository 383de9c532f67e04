/** Runs Debian's nebula-cert 1.6.1, the reference implementation the signer is checked against. */

export async function nebulaCert(
  args: string[],
  cwd?: string,
  env?: Record<string, string>,
): Promise<string> {
  const output = await new Deno.Command("nebula-cert", {
    args,
    cwd,
    env,
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

/**
 * Runs `nebula-cert print -json` on the first certificate in `path`. It prints
 * times in the local zone, so it runs west of UTC here to make sure callers
 * parse the offset instead of comparing strings.
 */
export async function printCertificate(
  path: string,
): Promise<{ details: PrintedDetails; fingerprint: string }> {
  const text = await nebulaCert(
    ["print", "-json", "-path", path],
    undefined,
    { TZ: "America/Chicago" },
  );
  return JSON.parse(text.split("\n")[0]);
}
