/**
 * Random certificates checked by the reference implementation: every one
 * must pass `nebula-cert verify` against its CA, and `nebula-cert print`
 * must show the fields that were signed.
 */
import assert from "node:assert/strict";
import {
  createCa,
  type ProjectCa,
  signHostCertificate,
} from "../../shared/pki/ca.ts";
import {
  decodeCertificate,
  encodeCertificate,
  intToIp,
  prefixToMask,
} from "../../shared/pki/cert.ts";
import { toHex } from "../../shared/pki/base64.ts";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
import { printCertificate, tryNebulaCert } from "./oracle.ts";

const CASES = 50;
const ALPHABET = [
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.:@#/\\\"'",
  "é",
  "ß",
  "Ω",
  "编",
  "辑",
  "🎬",
  "🙂",
  "\u200b",
];

function randomInt(max: number): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] % max;
}

function randomText(maxLength: number): string {
  const length = 1 + randomInt(maxLength);
  return Array.from({ length }, () => ALPHABET[randomInt(ALPHABET.length)])
    .join("");
}

/** Returns a random usable host address in a random /8../30 network. */
function randomNetwork() {
  const prefixLength = 8 + randomInt(23);
  const mask = prefixToMask(prefixLength);
  const network = (((10 << 24) | randomInt(1 << 24)) & mask) >>> 0;
  const hosts = 2 ** (32 - prefixLength) - 2;
  const ip = intToIp(network + 1 + randomInt(hosts));
  return { cidr: `${intToIp(network)}/${prefixLength}`, ip, prefixLength };
}

async function signRandom(
  ca: ProjectCa,
  net: ReturnType<typeof randomNetwork>,
) {
  const keys = await generateX25519KeyPair();
  const name = randomText(randomInt(4) === 0 ? 220 : 30);
  const groups = Array.from(
    { length: randomInt(4) === 0 ? 40 : randomInt(4) },
    () => randomText(20),
  );
  // Valid now, so that nebula-cert verify, which checks at the current time, accepts it.
  const notBefore = new Date(Date.now() - randomInt(3600) * 1000);
  const notAfter = new Date(Date.now() + (1 + randomInt(48)) * 3_600_000);
  const certificate = await signHostCertificate({
    ca,
    caPrivateKey: ca.privateKey,
    publicKey: keys.publicKey,
    name,
    ip: net.ip,
    prefixLength: net.prefixLength,
    groups,
    notBefore,
    notAfter,
  });
  return { certificate, keys, name, groups, notBefore, notAfter };
}

Deno.test("signHostCertificate() output passes nebula-cert for random inputs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-property-" });
  try {
    for (let index = 0; index < CASES; index++) {
      const net = randomNetwork();
      const now = new Date(Date.now() - 2 * 86_400_000);
      const ca = await createCa({
        name: randomText(20),
        cidr: net.cidr,
        notBefore: now,
        notAfter: new Date(now.getTime() + 7 * 86_400_000),
      });
      const sample = await signRandom(ca, net);
      await Deno.writeTextFile(`${dir}/ca.crt`, ca.pem);
      await Deno.writeTextFile(`${dir}/host.crt`, sample.certificate.pem);

      const verdict = await tryNebulaCert([
        "verify",
        "-ca",
        `${dir}/ca.crt`,
        "-crt",
        `${dir}/host.crt`,
      ]);
      const printed = await printCertificate(`${dir}/host.crt`);
      const label = `case ${index}: ${
        JSON.stringify({
          name: sample.name,
          ip: net.ip,
          prefix: net.prefixLength,
        })
      }`;

      assert.ok(
        verdict.success,
        `${label}: ${verdict.output}`,
      );
      assert.equal(printed.details.name, sample.name, label);
      assert.deepEqual(
        printed.details.ips,
        [`${net.ip}/${net.prefixLength}`],
        label,
      );
      assert.deepEqual(printed.details.groups, sample.groups, label);
      assert.equal(
        printed.details.publicKey,
        toHex(sample.keys.publicKey),
        label,
      );
      assert.equal(printed.details.issuer, ca.fingerprint, label);
      assert.equal(printed.details.isCa, false, label);
      assert.equal(
        new Date(printed.details.notBefore).getTime(),
        Math.floor(sample.notBefore.getTime() / 1000) * 1000,
        label,
      );
      assert.equal(
        new Date(printed.details.notAfter).getTime(),
        Math.floor(sample.notAfter.getTime() / 1000) * 1000,
        label,
      );
      assert.equal(printed.fingerprint, sample.certificate.fingerprint, label);
      assert.match(printed.fingerprint, /^[0-9a-f]{64}$/, label);
      assert.deepEqual(
        encodeCertificate(decodeCertificate(sample.certificate.bytes)),
        sample.certificate.bytes,
        `${label}: decoding and encoding again changes nothing`,
      );
      assert.match(printed.details.notAfter, /[+-]0[56]:00$/, label);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("signHostCertificate() verifies with a long name and 40 groups", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-long-" });
  try {
    const now = new Date(Date.now() - 60_000);
    const ca = await createCa({
      name: "long fields",
      cidr: "10.8.0.0/16",
      notBefore: now,
      notAfter: new Date(now.getTime() + 86_400_000),
    });
    const keys = await generateX25519KeyPair();
    const groups = Array.from(
      { length: 40 },
      (_, index) => `group-${index}-${"g".repeat(10)}`,
    );
    const certificate = await signHostCertificate({
      ca,
      caPrivateKey: ca.privateKey,
      publicKey: keys.publicKey,
      name: "n".repeat(200),
      ip: "10.8.200.9",
      prefixLength: 16,
      groups,
      notBefore: new Date(),
      notAfter: new Date(Date.now() + 3_600_000),
    });
    await Deno.writeTextFile(`${dir}/ca.crt`, ca.pem);
    await Deno.writeTextFile(`${dir}/host.crt`, certificate.pem);

    const verdict = await tryNebulaCert([
      "verify",
      "-ca",
      `${dir}/ca.crt`,
      "-crt",
      `${dir}/host.crt`,
    ]);

    const printed = await printCertificate(`${dir}/host.crt`);

    assert.ok(
      certificate.bytes.length > 600,
      "the details need multi-byte varint lengths",
    );
    assert.ok(verdict.success, verdict.output);
    assert.equal(printed.details.name, "n".repeat(200));
    assert.deepEqual(printed.details.groups, groups);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
