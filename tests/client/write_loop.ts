/**
 * Child process of the crash test: installs two configurations in turn,
 * forever, and prints one line after each finished switch. The test kills it
 * with SIGKILL at random moments.
 * Arguments: target directory, then the source directories of A and B.
 */
import { type ConfigFile, writeConfiguration } from "../../client/src/store.ts";

const [target, ...sources] = Deno.args;

async function load(dir: string): Promise<Record<string, ConfigFile>> {
  const files: Record<string, ConfigFile> = {};
  for (const entry of Deno.readDirSync(dir)) {
    const mode = entry.name === "node.key" ? 0o600 : 0o644;
    files[entry.name] = {
      content: await Deno.readFile(`${dir}/${entry.name}`),
      mode,
    };
  }
  return files;
}

const versions = await Promise.all(sources.map(load));
const encoder = new TextEncoder();
for (let i = 0;; i++) {
  await writeConfiguration(target, versions[i % versions.length]);
  await Deno.stdout.write(encoder.encode(`${i}\n`));
}
