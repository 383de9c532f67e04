/**
 * A throwaway PostgreSQL cluster from the machine's own binaries, for tests
 * and benchmarks. The server refuses to run as root, so as root the cluster
 * is created and started as the `postgres` user.
 */

export interface Cluster {
  /** URL of the cluster's `postgres` database. */
  url: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

const IS_ROOT = Deno.uid() === 0;

/** Finds the directory of initdb and pg_ctl, newest major version first. */
export function findPostgresBinDir(): string {
  const fromEnv = Deno.env.get("PG_BIN_DIR");
  if (fromEnv) return fromEnv;

  const majors: number[] = [];
  try {
    for (const entry of Deno.readDirSync("/usr/lib/postgresql")) {
      if (/^\d+$/.test(entry.name)) majors.push(Number(entry.name));
    }
  } catch {
    // Not a Debian layout; fall through to PATH.
  }
  if (majors.length > 0) {
    return `/usr/lib/postgresql/${Math.max(...majors)}/bin`;
  }
  throw new Error(
    "PostgreSQL server binaries not found in /usr/lib/postgresql; install the postgresql package or set PG_BIN_DIR",
  );
}

async function run(args: string[], options: { asPostgres?: boolean } = {}) {
  const command = IS_ROOT && options.asPostgres
    ? ["runuser", "-u", "postgres", "--", ...args]
    : args;
  const output = await new Deno.Command(command[0], {
    args: command.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr);
    throw new Error(
      `${args[0]} failed (exit ${output.code}): ${stderr.trim()}`,
    );
  }
  return new TextDecoder().decode(output.stdout);
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function initAndStart(
  bin: string,
  dir: string,
  data: string,
): Promise<number> {
  await run([
    `${bin}/initdb`,
    "-D",
    data,
    "-U",
    "postgres",
    "-A",
    "trust",
    "-E",
    "UTF8",
    "--no-sync",
  ], { asPostgres: true });

  const port = freePort();
  const settings = [
    `-p ${port}`,
    `-k ${dir}`,
    "-c listen_addresses=127.0.0.1",
    "-c max_connections=300",
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
  ].join(" ");
  await run([
    `${bin}/pg_ctl`,
    "-D",
    data,
    "-o",
    settings,
    "-l",
    `${dir}/server.log`,
    "-w",
    "start",
  ], { asPostgres: true });
  return port;
}

/** Creates and starts a cluster tuned for tests (no fsync), on a free port. */
export async function startCluster(): Promise<Cluster> {
  const bin = findPostgresBinDir();
  const dir = await Deno.makeTempDir({ prefix: "vidsync-pg-" });
  if (IS_ROOT) await run(["chown", "postgres:postgres", dir]);

  const data = `${dir}/data`;
  let port: number;
  try {
    port = await initAndStart(bin, dir, data);
  } catch (error) {
    // initdb or the start failed or was interrupted, so remove the partial cluster.
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }

  let stopped = false;
  return {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await run([`${bin}/pg_ctl`, "-D", data, "-m", "immediate", "stop"], {
          asPostgres: true,
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}

/** Stops a cluster synchronously; for `unload` handlers, which cannot await. */
export function stopClusterSync(cluster: Cluster): void {
  const bin = findPostgresBinDir();
  const args = [
    `${bin}/pg_ctl`,
    "-D",
    `${cluster.dir}/data`,
    "-m",
    "immediate",
    "stop",
  ];
  const command = IS_ROOT ? ["runuser", "-u", "postgres", "--", ...args] : args;
  new Deno.Command(command[0], {
    args: command.slice(1),
    stdout: "null",
    stderr: "null",
  }).outputSync();
  Deno.removeSync(cluster.dir, { recursive: true });
}

/**
 * Starts a watcher in its own session that stops the cluster once process
 * `pid` has exited. `deno test` handles Ctrl-C itself without running
 * `unload` handlers, and nothing runs after SIGKILL.
 */
export function stopClusterWhenGone(cluster: Cluster, pid = Deno.pid): void {
  const bin = findPostgresBinDir();
  const asPostgres = IS_ROOT ? "runuser -u postgres -- " : "";
  const script = [
    `while kill -0 ${pid} 2>/dev/null; do sleep 0.5; done`,
    `if [ -d '${cluster.dir}/data' ]; then ${asPostgres}'${bin}/pg_ctl' -D '${cluster.dir}/data' -m immediate stop; fi`,
    `rm -rf '${cluster.dir}'`,
  ].join("; ");
  const watcher = new Deno.Command("setsid", {
    args: ["sh", "-c", script],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  watcher.unref();
}
