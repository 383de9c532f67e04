/**
 * Signing benchmark: native TypeScript signing against one `nebula-cert sign`
 * process per certificate (how the earlier VidSync server signed). Both sign
 * for the same CA and public key, in the same run.
 *
 * The same loop also times the Ed25519 signature alone, on the same CA key and
 * the same certificate bytes, through WebCrypto (`crypto.subtle.sign`, what the
 * product uses) and through `node:crypto` `sign()`. Those two are a reference
 * for what bounds native signing. The product keeps WebCrypto.
 */
import { createPrivateKey, sign as nodeSign } from "node:crypto";
import { readCertificatePem, signHostCertificate } from "../shared/pki/ca.ts";
import { encodeDetails } from "../shared/pki/cert.ts";
import { parseCaPrivateKey, parseDevicePublicKey } from "../shared/pki/keys.ts";

export interface SigningFigures {
  samples: number;
  nativeMedianMs: number;
  nebulaCertMedianMs: number;
  /** nebula-cert median divided by native median. */
  ratio: number;
  /** The Ed25519 signature alone through WebCrypto, key imported beforehand (reference). */
  webCryptoSignMedianMs: number;
  /** The Ed25519 signature alone through `node:crypto` `sign()`, same key and bytes (reference). */
  nodeCryptoSignMedianMs: number;
}

/** Imports the CA key as a WebCrypto Ed25519 signing key and as a node:crypto KeyObject. */
async function referenceKeys(caPrivateKey: Uint8Array) {
  const base64Url = (bytes: Uint8Array) =>
    btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll(
      "/",
      "_",
    ).replace(/=+$/, "");
  const jwk = {
    kty: "OKP",
    crv: "Ed25519",
    d: base64Url(caPrivateKey.subarray(0, 32)),
    x: base64Url(caPrivateKey.subarray(32)),
  };
  const webCrypto = await crypto.subtle.importKey(
    "jwk",
    jwk,
    { name: "Ed25519" },
    false,
    ["sign"],
  );
  const nodeKey = createPrivateKey({ key: jwk, format: "jwk" });
  return { webCrypto, nodeKey };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
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

    const keys = await referenceKeys(caPrivateKey);
    const native: number[] = [];
    const external: number[] = [];
    const webCryptoSign: number[] = [];
    const nodeCryptoSign: number[] = [];
    // Interleaved, so that machine noise hits every side alike.
    for (let index = 0; index < samples; index++) {
      const ip = `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${
        (index & 255) || 1
      }`;
      let started = performance.now();
      const signed = await signHostCertificate({
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

      // The bytes the native signer just signed, signed again by each reference.
      const data = encodeDetails(
        signed.certificate.details,
      ) as Uint8Array<ArrayBuffer>;
      started = performance.now();
      const webSignature = new Uint8Array(
        await crypto.subtle.sign({ name: "Ed25519" }, keys.webCrypto, data),
      );
      webCryptoSign.push(performance.now() - started);

      started = performance.now();
      const nodeSignature = nodeSign(null, data, keys.nodeKey);
      nodeCryptoSign.push(performance.now() - started);

      // Ed25519 is deterministic: equal signatures show the same key and bytes.
      if (
        !equalBytes(webSignature, signed.certificate.signature) ||
        !equalBytes(nodeSignature, signed.certificate.signature)
      ) {
        throw new Error("The reference signatures differ from the native one");
      }

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
      webCryptoSignMedianMs: median(webCryptoSign),
      nodeCryptoSignMedianMs: median(nodeCryptoSign),
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
