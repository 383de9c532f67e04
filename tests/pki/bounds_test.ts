import assert from "node:assert/strict";
import { createCa, signHostCertificate } from "../../shared/pki/ca.ts";
import { InvalidInputError } from "../../shared/errors.ts";
import { generateX25519KeyPair } from "../../shared/pki/keys.ts";
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
        error.code === "certificate_out_of_bounds",
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
