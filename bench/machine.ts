/** The machine a run measured: hardware, kernel and the versions of the measured software. */

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  deno: string;
  postgres: string;
  nebula: string;
  iperf3: string;
}

async function commandLine(command: string, args: string[]): Promise<string> {
  try {
    const output = await new Deno.Command(command, {
      args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr);
    return text.trim().split("\n")[0] ?? "unknown";
  } catch {
    return "not installed";
  }
}

function readField(path: string, pattern: RegExp): string | undefined {
  try {
    return pattern.exec(Deno.readTextFileSync(path))?.[1]?.trim();
  } catch {
    return undefined;
  }
}

/** Describes this machine; `postgresBin` is the directory of the cluster's binaries. */
export async function describeMachine(postgresBin: string): Promise<Machine> {
  const memoryKiB = Number(
    readField("/proc/meminfo", /^MemTotal:\s+(\d+)/m) ?? 0,
  );

  return {
    cpuModel: readField("/proc/cpuinfo", /^model name\s*:(.*)$/m) ??
      "unknown",
    cores: navigator.hardwareConcurrency,
    memoryGiB: Math.round(memoryKiB / 1024 / 1024 * 10) / 10,
    kernel: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    postgres: await commandLine(`${postgresBin}/postgres`, ["--version"]),
    nebula: await commandLine("nebula", ["-version"]),
    iperf3: await commandLine("iperf3", ["--version"]),
  };
}
