/**
 * `npm test`: starts one throwaway PostgreSQL cluster (unless DATABASE_URL
 * names a server), builds the migrated template database, runs `deno test`
 * with any extra arguments, and stops the cluster again, also on Ctrl-C.
 * Prints a closing `N passed, N failed` line.
 */
import { type Cluster, startCluster } from "../tests/support/cluster.ts";
import { SERVER_URL_ENV } from "../tests/support/db.ts";
import { buildTemplate } from "../tests/support/template.ts";

const SUMMARY = /(\d+) passed.*?\|\s*(\d+) failed(?:.*?\|\s*(\d+) ignored)?/;

// The running `deno test`, so a signal can stop it before the cluster goes.
let testProcess: Deno.ChildProcess | undefined;

async function runDenoTest(serverUrl: string, args: string[]): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", ...args],
    env: { [SERVER_URL_ENV]: serverUrl },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  testProcess = child;

  // Echo the output while keeping its tail, where deno prints the summary.
  let tail = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    await Deno.stdout.write(chunk);
    tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4096);
  }
  const status = await child.status;

  // deno-lint-ignore no-control-regex
  const plain = tail.replace(/\x1b\[[0-9;]*m/g, "");
  const match = [...plain.matchAll(new RegExp(SUMMARY, "g"))].at(-1);
  if (match) {
    const ignored = match[3] ? `, ${match[3]} skipped` : "";
    console.log(`\ntests: ${match[1]} passed, ${match[2]} failed${ignored}`);
  }
  return status.code;
}

async function main(): Promise<number> {
  const external = Deno.env.get("DATABASE_URL");
  // Held as a promise so a signal during initdb still stops what it starts.
  const starting: Promise<Cluster | undefined> = external
    ? Promise.resolve(undefined)
    : startCluster();
  const stop = async () => {
    const cluster = await starting.catch(() => undefined);
    await cluster?.stop();
  };
  const onSignal = () => {
    // A signal sent to this process alone would leave `deno test` running
    // against a stopped cluster.
    try {
      testProcess?.kill("SIGTERM");
    } catch {
      // It has already exited.
    }
    stop().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  try {
    const serverUrl = external ?? (await starting)!.url;
    await buildTemplate(serverUrl);
    return await runDenoTest(serverUrl, Deno.args);
  } finally {
    await stop();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

Deno.exit(await main());
