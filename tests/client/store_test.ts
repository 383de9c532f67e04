import assert from "node:assert/strict";
import * as path from "node:path";
import { checkBundle, pointConfigAt } from "../../client/src/bundle.ts";
import { parseCertificate } from "../../client/src/cert.ts";
import { ConfigFileError } from "../../client/src/errors.ts";
import {
  generateKeyPair,
  keyPairFromPrivatePem,
} from "../../client/src/keys.ts";
import {
  currentVersion,
  removeConfiguration,
  writeConfiguration,
} from "../../client/src/store.ts";
import { makeCa, nebulaTest, sampleConfig, signHost } from "./support.ts";

const ITERATIONS = Number(Deno.env.get("CLIENT_CRASH_ITERATIONS") ?? 60);

/** Writes the source files of one configuration (own key and certificate) into `dir/<label>`. */
async function makeVersion(dir: string, label: string, target: string) {
  const keyPair = await generateKeyPair();
  await Deno.writeTextFile(`${dir}/${label}.pub`, keyPair.publicKeyPem);
  const certPem = await signHost(
    dir,
    label,
    `10.77.0.${label === "a" ? 10 : 11}/24`,
    `${dir}/${label}.pub`,
  );
  const certificate = await parseCertificate(certPem);
  const source = `${dir}/src-${label}`;
  await Deno.mkdir(source);
  await Deno.writeTextFile(
    `${source}/ca.crt`,
    await Deno.readTextFile(`${dir}/ca.crt`),
  );
  await Deno.writeTextFile(`${source}/node.crt`, certPem);
  await Deno.writeTextFile(`${source}/node.key`, keyPair.privateKeyPem);
  await Deno.writeTextFile(
    `${source}/nebula.yml`,
    pointConfigAt(sampleConfig(), target),
  );
  await Deno.writeTextFile(
    `${source}/device.json`,
    JSON.stringify({ label, fingerprint: certificate.fingerprint }),
  );

  return { source, fingerprint: certificate.fingerprint };
}

/** Checks that `target` contains one whole configuration and returns its label, or null when there is none. */
async function inspect(target: string): Promise<string | null> {
  const version = await currentVersion(target);
  if (!version) return null;

  const read = (name: string) => Deno.readTextFile(path.join(target, name));
  const state = JSON.parse(await read("device.json"));
  const certPem = await read("node.crt");
  const keyPair = await keyPairFromPrivatePem(await read("node.key"));
  assert.ok(keyPair, "node.key is not a Nebula private key");
  const checked = await checkBundle(
    {
      caPem: await read("ca.crt"),
      certPem,
      nebulaYml: await read("nebula.yml"),
      readme: "",
    },
    keyPair.publicKey,
    "key",
  );
  assert.equal(
    checked.certificate.fingerprint,
    state.fingerprint,
    "device.json and node.crt are from different versions",
  );

  return state.label;
}

Deno.test("writeConfiguration() switches versions and sets modes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mesh-store-" });
  const target = `${dir}/nebula/project`;

  const first = await writeConfiguration(target, {
    "a.txt": { content: "one", mode: 0o644 },
    "node.key": { content: "secret", mode: 0o600 },
  });
  const second = await writeConfiguration(target, {
    "a.txt": { content: "two", mode: 0o644 },
    "node.key": { content: "secret", mode: 0o600 },
  });

  assert.notEqual(first, second);
  assert.equal(await currentVersion(target), second);
  assert.equal(await Deno.readTextFile(`${target}/a.txt`), "two");
  assert.equal((await Deno.stat(`${target}/node.key`)).mode! & 0o777, 0o600);
  assert.equal((await Deno.stat(`${target}/a.txt`)).mode! & 0o777, 0o644);
  // The previous version is gone; only the link and the live version remain.
  assert.deepEqual([...Deno.readDirSync(`${dir}/nebula`)].length, 2);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("removeConfiguration() removes link and files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mesh-store-" });
  const target = `${dir}/project`;
  await writeConfiguration(target, {
    "a.txt": { content: "one", mode: 0o644 },
  });

  const removed = await removeConfiguration(target);
  const again = await removeConfiguration(target);

  assert.equal(removed, true);
  assert.equal(again, false);
  assert.deepEqual([...Deno.readDirSync(dir)], []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeConfiguration() refuses a non-empty regular directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mesh-store-" });
  await Deno.mkdir(`${dir}/project`);
  await Deno.writeTextFile(`${dir}/project/keep.txt`, "user data");
  await Deno.mkdir(`${dir}/empty`);

  const error = await writeConfiguration(`${dir}/project`, {
    "a.txt": { content: "one", mode: 0o644 },
  }).catch((e) => e);
  await writeConfiguration(`${dir}/empty`, {
    "a.txt": { content: "one", mode: 0o644 },
  });

  assert.ok(error instanceof ConfigFileError);
  assert.equal(error.code, "unmanaged_directory");
  assert.equal(await Deno.readTextFile(`${dir}/project/keep.txt`), "user data");
  assert.equal(await Deno.readTextFile(`${dir}/empty/a.txt`), "one");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SIGKILL during writes leaves the old or the new configuration", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mesh-crash-" });
  const target = `${dir}/nebula/project`;
  await makeCa(dir);
  const a = await makeVersion(dir, "a", target);
  const b = await makeVersion(dir, "b", target);
  const seen = { a: 0, b: 0, none: 0, interrupted: 0 };

  for (let i = 0; i < ITERATIONS; i++) {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./write_loop.ts", import.meta.url).pathname,
        target,
        a.source,
        b.source,
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    // Wait for the child's first finished switch, then kill it a random time later.
    const reader = child.stdout.getReader();
    await reader.read();
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 25));
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel().catch(() => {});

    const leftovers = [...Deno.readDirSync(path.dirname(target))].length - 2;
    if (leftovers > 0) seen.interrupted++;
    const label = await inspect(target);
    seen[(label ?? "none") as keyof typeof seen]++;
    if (i % 10 === 0) {
      const result = await nebulaTest(`${target}/nebula.yml`);
      assert.equal(result.code, 0, result.stdout + result.stderr);
    }
  }

  console.log(`crash test: ${JSON.stringify(seen)} over ${ITERATIONS} kills`);
  assert.equal(seen.none, 0);
  assert.ok(seen.a > 0, "no kill left version a in place");
  assert.ok(seen.b > 0, "no kill left version b in place");
  assert.ok(
    seen.interrupted > 0,
    "no kill landed inside a write; the test proved nothing",
  );
  await Deno.remove(dir, { recursive: true });
});
