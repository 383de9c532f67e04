import assert from "node:assert/strict";
import { createCa, signHostCertificate } from "../../shared/pki/ca.ts";
import { InvalidInputError } from "../../shared/errors.ts";
import {
  generateX25519KeyPair,
  parseDevicePublicKey,
} from "../../shared/pki/keys.ts";
import { encodePem, PEM_TYPES } from "../../shared/pki/pem.ts";
import { nebulaCert, tryNebulaCert } from "./oracle.ts";
import {
  openCaKey,
  parseKek,
  sealCaKey,
} from "../../shared/pki/key_encryption.ts";

const DAY = 86_400_000;

async function setUp() {
  const notBefore = new Date("2030-01-01T00:00:00Z");
  const ca = await createCa({
    name: "bounds",
    cidr: "10.50.0.0/24",
    notBefore,
    notAfter: new Date(notBefore.getTime() + 10 * DAY),
  });
  const keys = await generateX25519KeyPair();
  const base = {
    ca,
    caPrivateKey: ca.privateKey,
    publicKey: keys.publicKey,
    name: "device",
    ip: "10.50.0.9",
    prefixLength: 24,
    groups: [],
    notBefore,
    notAfter: new Date(notBefore.getTime() + DAY),
  };
  return { ca, base };
}

Deno.test("signHostCertificate() refuses addresses outside the CA network", async () => {
  const { base } = await setUp();
  const cases = [
    { ip: "10.50.1.9", prefixLength: 24 },
    { ip: "203.0.113.7", prefixLength: 24 },
    { ip: "10.50.0.9", prefixLength: 16 },
  ];

  for (const target of cases) {
    await assert.rejects(
      signHostCertificate({ ...base, ...target }),
      (error) =>
        error instanceof InvalidInputError &&
        error.code === "invalid_input" &&
        error.errors[0]?.field === "ip",
      JSON.stringify(target),
    );
  }
});

Deno.test("signHostCertificate() refuses validity outside the CA", async () => {
  const { ca, base } = await setUp();
  const early = () =>
    signHostCertificate({
      ...base,
      notBefore: new Date(ca.notBefore.getTime() - 1000),
    });
  const late = () =>
    signHostCertificate({
      ...base,
      notAfter: new Date(ca.notAfter.getTime() + 1000),
    });

  await assert.rejects(early, InvalidInputError);
  await assert.rejects(late, InvalidInputError);
  const edge = await signHostCertificate({
    ...base,
    notBefore: ca.notBefore,
    notAfter: ca.notAfter,
  });
  assert.deepEqual(
    edge.notAfter,
    ca.notAfter,
    "equal to the CA's NotAfter is allowed",
  );
});

Deno.test("sealCaKey() round-trips and binds the project", async () => {
  const kek = parseKek(
    btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32)))),
  );
  const key = crypto.getRandomValues(new Uint8Array(64));

  const sealed = await sealCaKey(kek, "project-a", key);
  const opened = await openCaKey(kek, "project-a", sealed);

  assert.deepEqual(opened, key);
  await assert.rejects(openCaKey(kek, "project-b", sealed), /Could not open/);
  await assert.rejects(
    openCaKey(crypto.getRandomValues(new Uint8Array(32)), "project-a", sealed),
    /Could not open/,
  );
  assert.throws(() => parseKek(btoa("short")), /32 bytes/);
});

Deno.test("signHostCertificate() caps a lifetime at the CA's NotAfter", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-cap-" });
  try {
    const now = new Date();
    const ca = await createCa({
      name: "ten days",
      cidr: "10.50.0.0/24",
      now,
      lifetimeSeconds: 10 * 86_400,
    });
    const keys = await generateX25519KeyPair();
    const host = await signHostCertificate({
      ca,
      caPrivateKey: ca.privateKey,
      publicKey: keys.publicKey,
      name: "thirty-day request",
      ip: "10.50.0.9",
      prefixLength: 24,
      groups: [],
      now,
      lifetimeSeconds: 30 * 86_400,
    });
    await Deno.writeTextFile(`${dir}/ca.crt`, ca.pem);
    await Deno.writeTextFile(`${dir}/host.crt`, host.pem);
    const verdict = await tryNebulaCert([
      "verify",
      "-ca",
      `${dir}/ca.crt`,
      "-crt",
      `${dir}/host.crt`,
    ]);

    assert.deepEqual(host.notAfter, ca.notAfter);
    assert.equal(
      host.notBefore.getTime(),
      Math.floor(now.getTime() / 1000) * 1000,
    );
    assert.ok(verdict.success, verdict.output);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("signHostCertificate() never starts after the signing time", async () => {
  const { ca, base } = await setUp();
  const now = new Date(ca.notBefore.getTime() + DAY);

  await assert.rejects(
    signHostCertificate({
      ...base,
      now,
      notBefore: new Date(now.getTime() + 600_000),
    }),
    (error) =>
      error instanceof InvalidInputError &&
      error.errors[0]?.field === "notBefore",
  );
  const beforeCa = new Date(ca.notBefore.getTime() - 1000);
  await assert.rejects(
    signHostCertificate({
      ...base,
      notBefore: undefined,
      notAfter: undefined,
      now: beforeCa,
      lifetimeSeconds: 3600,
    }),
    (error) =>
      error instanceof InvalidInputError &&
      error.errors[0]?.field === "notBefore",
    "a CA that is not valid yet signs nothing",
  );
  const afterCa = new Date(ca.notAfter.getTime() + 1000);
  await assert.rejects(
    signHostCertificate({
      ...base,
      notBefore: undefined,
      notAfter: undefined,
      now: afterCa,
      lifetimeSeconds: 3600,
    }),
    InvalidInputError,
    "an expired CA signs nothing",
  );
});

Deno.test("signHostCertificate() rejects text UTF-8 cannot carry", async () => {
  const { base } = await setUp();

  await assert.rejects(
    signHostCertificate({ ...base, name: "cut\ud83c" }),
    (error) =>
      error instanceof InvalidInputError && error.errors[0]?.field === "name",
  );
  await assert.rejects(
    signHostCertificate({ ...base, groups: ["\udc00"] }),
    (error) =>
      error instanceof InvalidInputError &&
      error.errors[0]?.field === "groups",
  );
});

Deno.test("out-of-network addresses fail here and in nebula-cert", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vidsync-outside-" });
  try {
    const now = new Date();
    const ca = await createCa({
      name: "outside",
      cidr: "10.70.16.0/20",
      now,
      lifetimeSeconds: 86_400,
    });
    await Deno.writeTextFile(`${dir}/ca.crt`, ca.pem);
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
    const keys = parseDevicePublicKey(await Deno.readTextFile(`${dir}/h.pub`));

    for (let index = 0; index < 10; index++) {
      const target = randomOutside(index);
      const label = `${target.ip}/${target.prefixLength}`;
      await assert.rejects(
        signHostCertificate({
          ca,
          caPrivateKey: ca.privateKey,
          publicKey: keys,
          name: "outside",
          groups: [],
          now,
          lifetimeSeconds: 3600,
          ...target,
        }),
        InvalidInputError,
        label,
      );
      const oracle = await tryNebulaCert([
        "sign",
        "-ca-crt",
        `${dir}/ca.crt`,
        "-ca-key",
        `${dir}/ca.key`,
        "-name",
        "outside",
        "-ip",
        label,
        "-in-pub",
        `${dir}/h.pub`,
        "-out-crt",
        `${dir}/out-${index}.crt`,
      ]);
      assert.equal(oracle.success, false, `nebula-cert signed ${label}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Returns a random address outside 10.70.16.0/20, or inside it with a shorter prefix. */
function randomOutside(index: number): { ip: string; prefixLength: number } {
  const random = crypto.getRandomValues(new Uint32Array(2));
  if (index % 3 === 0) {
    return {
      ip: `10.70.${16 + (random[0] % 16)}.${1 + (random[1] % 254)}`,
      prefixLength: 8 + (random[0] % 12),
    };
  }
  let third = random[0] % 256;
  if (third >= 16 && third < 32) third += 16;
  return {
    ip: `10.${index % 2 ? 70 : 71}.${third}.${1 + (random[1] % 254)}`,
    prefixLength: 20 + (random[1] % 11),
  };
}
