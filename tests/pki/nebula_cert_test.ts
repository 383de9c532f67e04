import assert from "node:assert/strict";
import {
  createCa,
  readCertificatePem,
  signHostCertificate,
} from "../../shared/pki/ca.ts";
import {
  parseCaPrivateKey,
  parseDevicePublicKey,
} from "../../shared/pki/keys.ts";
import { toHex } from "../../shared/pki/base64.ts";
import { nebulaCert, printCertificate, tryNebulaCert } from "./oracle.ts";

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-pki-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("signHostCertificate() writes the bytes nebula-cert sign writes", async () => {
  await withTempDir(async (dir) => {
    await nebulaCert([
      "ca",
      "-name",
      "Oracle CA",
      "-duration",
      "8760h",
      "-out-crt",
      `${dir}/ca.crt`,
      "-out-key",
      `${dir}/ca.key`,
    ]);
    await nebulaCert([
      "keygen",
      "-out-key",
      `${dir}/host.key`,
      "-out-pub",
      `${dir}/host.pub`,
    ]);
    await nebulaCert([
      "sign",
      "-ca-crt",
      `${dir}/ca.crt`,
      "-ca-key",
      `${dir}/ca.key`,
      "-name",
      "edit-suite-1",
      "-ip",
      "10.1.0.5/16",
      "-groups",
      "editors, colorists",
      "-in-pub",
      `${dir}/host.pub`,
      "-out-crt",
      `${dir}/host.crt`,
    ]);
    const expected = await Deno.readTextFile(`${dir}/host.crt`);
    const printed = await printCertificate(`${dir}/host.crt`);

    const ca = await readCertificatePem(
      await Deno.readTextFile(`${dir}/ca.crt`),
    );
    const ours = await signHostCertificate({
      ca,
      caPrivateKey: parseCaPrivateKey(await Deno.readTextFile(`${dir}/ca.key`)),
      publicKey: parseDevicePublicKey(
        await Deno.readTextFile(`${dir}/host.pub`),
      ),
      name: "edit-suite-1",
      ip: "10.1.0.5",
      prefixLength: 16,
      groups: ["editors", "colorists"],
      notBefore: new Date(printed.details.notBefore),
      notAfter: new Date(printed.details.notAfter),
    });

    assert.equal(ours.pem, expected);
    assert.equal(ours.fingerprint, printed.fingerprint);
  });
});

Deno.test("createCa() makes a CA that nebula-cert signs with", async () => {
  await withTempDir(async (dir) => {
    const now = new Date();
    const ca = await createCa({
      name: "project CA",
      cidr: "10.9.0.0/24",
      notBefore: now,
      notAfter: new Date(now.getTime() + 86_400_000),
    });
    await Deno.writeTextFile(`${dir}/ca.crt`, ca.pem);
    const { encodePem, PEM_TYPES } = await import("../../shared/pki/pem.ts");
    await Deno.writeTextFile(
      `${dir}/ca.key`,
      encodePem(PEM_TYPES.ed25519Private, ca.privateKey),
    );
    await nebulaCert([
      "keygen",
      "-out-key",
      `${dir}/h.key`,
      "-out-pub",
      `${dir}/h.pub`,
    ]);

    const inside = await tryNebulaCert([
      "sign",
      "-ca-crt",
      `${dir}/ca.crt`,
      "-ca-key",
      `${dir}/ca.key`,
      "-name",
      "h",
      "-ip",
      "10.9.0.7/24",
      "-in-pub",
      `${dir}/h.pub`,
      "-out-crt",
      `${dir}/in.crt`,
    ]);
    const outsideCidr = await tryNebulaCert([
      "sign",
      "-ca-crt",
      `${dir}/ca.crt`,
      "-ca-key",
      `${dir}/ca.key`,
      "-name",
      "h",
      "-ip",
      "10.9.1.7/24",
      "-in-pub",
      `${dir}/h.pub`,
      "-out-crt",
      `${dir}/out.crt`,
    ]);
    const printed = await printCertificate(`${dir}/ca.crt`);

    assert.ok(inside.success, inside.output);
    assert.equal(
      outsideCidr.success,
      false,
      "nebula-cert refuses an address outside the CA network",
    );
    assert.equal(printed.fingerprint, ca.fingerprint);
    assert.deepEqual(printed.details.ips, ["10.9.0.0/24"]);
    assert.equal(printed.details.isCa, true);
    assert.equal(printed.details.publicKey, toHex(ca.privateKey.subarray(32)));
  });
});
