/**
 * Signing benchmark: native TypeScript signing against one `nebula-cert sign`
 * process per certificate (how the earlier VidSync server signed). Both sign
 * for the same CA and public key, in the same run.
 */
import { readCertificatePem, signHostCertificate } from "../shared/pki/ca.ts";
import { parseCaPrivateKey, parseDevicePublicKey } from "../shared/pki/keys.ts";

export interface SigningFigures {
  samples: number;
  nativeMedianMs: number;
  nebulaCertMedianMs: number;
  /** nebula-cert median divided by native median. */
  ratio: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function run(command: string, args: string[]): Promise<void> {
  const output = await new Deno.Command(command, {
    args,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `${command} failed: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
}

export async function benchmarkSigning(samples = 200): Promise<SigningFigures> {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-bench-sign-" });
  try {
    await run("nebula-cert", [
      "ca",
      "-name",
      "bench",
      "-ips",
      "10.0.0.0/8",
      "-out-crt",
      `${dir}/ca.crt`,
      "-out-key",
      `${dir}/ca.key`,
    ]);
    await run("nebula-cert", [
      "keygen",
      "-out-key",
      `${dir}/h.key`,
      "-out-pub",
      `${dir}/h.pub`,
    ]);
    const ca = await readCertificatePem(
      await Deno.readTextFile(`${dir}/ca.crt`),
    );
    const caPrivateKey = parseCaPrivateKey(
      await Deno.readTextFile(`${dir}/ca.key`),
    );
    const publicKey = parseDevicePublicKey(
      await Deno.readTextFile(`${dir}/h.pub`),
    );
    const notBefore = new Date();
    const notAfter = new Date(notBefore.getTime() + 86_400_000);

    const native: number[] = [];
    const external: number[] = [];
    // Interleaved, so that machine noise hits both sides alike.
    for (let index = 0; index < samples; index++) {
      const ip = `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${
        (index & 255) || 1
      }`;
      let started = performance.now();
      await signHostCertificate({
        ca,
        caPrivateKey,
        publicKey,
        name: `host-${index}`,
        ip,
        prefixLength: 8,
        groups: ["bench"],
        notBefore,
        notAfter,
      });
      native.push(performance.now() - started);

      started = performance.now();
      await run("nebula-cert", [
        "sign",
        "-ca-crt",
        `${dir}/ca.crt`,
        "-ca-key",
        `${dir}/ca.key`,
        "-name",
        `host-${index}`,
        "-ip",
        `${ip}/8`,
        "-groups",
        "bench",
        "-in-pub",
        `${dir}/h.pub`,
        "-out-crt",
        `${dir}/out-${index}.crt`,
      ]);
      external.push(performance.now() - started);
    }

    const nativeMedianMs = median(native);
    const nebulaCertMedianMs = median(external);
    return {
      samples,
      nativeMedianMs,
      nebulaCertMedianMs,
      ratio: nebulaCertMedianMs / nativeMedianMs,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const figures = await benchmarkSigning(
    Number(Deno.env.get("BENCH_SIGN_SAMPLES") ?? 200),
  );
  console.log(JSON.stringify(figures, null, 2));
}
