/** Renders docs/BENCHMARKS.md from one run's results. */
import type { AllocationFigures } from "./allocation.ts";
import type { OverlayCpu, OverlayFigures } from "./overlay.ts";
import type { RegistrationProfile } from "./profile_registration.ts";
import type { FloorFigure, RegistrationFigures } from "./registration.ts";
import type { Results } from "./run.ts";
import type { SigningFigures } from "./sign.ts";
import { round } from "./stats.ts";

function verdict(met: boolean): string {
  return met ? "met" : "**missed**";
}

function table(header: string[], rows: (string | number)[][]): string {
  const lines = [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ];
  return lines.join("\n");
}

function machineSection(results: Results): string {
  const m = results.machine;
  return `## Machine

${
    table(["", ""], [
      ["CPU", `${m.cpuModel}, ${m.cores} cores`],
      ["memory", `${m.memoryGiB} GiB`],
      ["kernel", m.kernel],
      ["PostgreSQL", m.postgres],
      ["Deno", m.deno],
      ["Nebula", m.nebula.replace("Version: ", "")],
      ["iperf3", m.iperf3],
    ])
  }

Run started ${results.startedAt}, took ${results.durationSeconds} s${
    results.quick ? ", quick mode (BENCH_QUICK=1, fewer samples)" : ""
  }. The machine is shared with other work, so every figure is a median
(p99 where named) and every ratio compares two figures from this same run.
The PostgreSQL cluster is a throwaway one started by the benchmark with
\`fsync=off\` and \`synchronous_commit=off\` (as in the tests), so commit
latency is lower than on a durable server.
`;
}

function signingSection(s: SigningFigures): string {
  return `## 1. Signing a host certificate

Native TypeScript signing (\`shared/pki\`) against one \`nebula-cert sign\`
process per certificate, interleaved, ${s.samples} certificates each
(\`bench/sign.ts\`).

${
    table(["method", "median"], [
      [
        "native (Ed25519 through WebCrypto)",
        `${s.nativeMedianMs.toFixed(3)} ms`,
      ],
      ["`nebula-cert sign` process", `${s.nebulaCertMedianMs.toFixed(2)} ms`],
    ])
  }

Ratio: **${s.ratio.toFixed(0)}x**. Goal at least 100x: ${
    verdict(s.ratio >= 100)
  }.${s.ratio >= 100 ? "" : signingShortfall(s)}

${signatureReference(s)}
`;
}

/** Renders the table of the Ed25519 signature alone and a sentence on what bounds native signing. */
function signatureReference(s: SigningFigures): string {
  const budgetMs = s.nebulaCertMedianMs / 100;
  // Rounded as signingShortfall() prints it.
  const budget = `${(budgetMs * 1000).toFixed(0)} µs`;
  const slower = Math.max(s.webCryptoSignMedianMs, s.nodeCryptoSignMedianMs);
  let bound: string;
  if (slower >= budgetMs) {
    bound =
      `The slower one alone exceeds the ${budget} budget, so the signature itself bounds native signing.`;
  } else if (s.nativeMedianMs <= budgetMs) {
    const share = s.webCryptoSignMedianMs / s.nativeMedianMs * 100;
    bound =
      `A native signing meets the ${budget} budget, and the WebCrypto signature alone is ${
        share.toFixed(0)
      }% of it.`;
  } else {
    const restUs = (s.nativeMedianMs - s.webCryptoSignMedianMs) * 1000;
    bound =
      `Both stay under the ${budget} budget, so what bounds native signing is not the Ed25519 arithmetic but the other ${
        restUs.toFixed(0)
      } µs it takes beyond the WebCrypto signature alone.`;
  }
  return `For reference, the same loop also times the Ed25519 signature alone on the
same CA key and certificate bytes. It signs through WebCrypto with an imported
\`CryptoKey\`, as the product does, and through \`node:crypto\` \`sign()\`. The
product keeps WebCrypto.

${
    table(["signature alone", "median"], [
      [
        "`crypto.subtle.sign` (WebCrypto)",
        `${s.webCryptoSignMedianMs.toFixed(3)} ms`,
      ],
      [
        "`node:crypto` `sign(null, data, key)`",
        `${s.nodeCryptoSignMedianMs.toFixed(3)} ms`,
      ],
    ])
  }

${bound}`;
}

function signingShortfall(s: SigningFigures): string {
  const budgetUs = (s.nebulaCertMedianMs / 100 * 1000).toFixed(0);
  return `
On this machine a \`nebula-cert\` process starts, signs and exits in
${s.nebulaCertMedianMs.toFixed(2)} ms, so 100x needs native signing under
${budgetUs} µs. A native signature encodes the certificate, signs through
WebCrypto's async Ed25519 and hashes the result with SHA-256 for its
fingerprint.`;
}

function allocationSection(a: AllocationFigures): string {
  const throughput = table(
    ["connections", "allocations", "seconds", "allocations/s"],
    a.throughput.map((
      t,
    ) => [t.connections, t.allocations, t.seconds, t.perSecond]),
  );
  const latency = table(
    ["pool state", "allocated before", "samples", "median", "p99"],
    [
      ...a.latency.map((l) => [
        `${l.fillPercent}% full`,
        `${l.allocatedBefore} of ${l.poolSize}`,
        l.samples,
        `${l.medianMs} ms`,
        `${l.p99Ms} ms`,
      ]),
      [
        "empty, never analyzed",
        `0 of ${a.unanalyzed.poolSize}`,
        a.unanalyzed.samples,
        `${a.unanalyzed.medianMs} ms`,
        `${a.unanalyzed.p99Ms} ms`,
      ],
    ],
  );
  const plan99 = a.plans.find((p) => p.fillPercent === 99)?.plan ?? "";

  return `## 2. Address allocation

\`allocate_nebula_ip()\` called through \`shared/allocator\` (\`allocateIp\`) on
a /16 pool (65,533 usable addresses after one lighthouse), each call in its own
transaction. Throughput: fresh pool, device rows created beforehand, the
connections share one queue of devices.

${throughput}

Latency of single allocations on one connection, after filling the pool with
set-based SQL to the level and running \`VACUUM ANALYZE\` (autovacuum does the
same after a bulk change of this size). The timed allocations themselves move
the fill level by at most ${
    (a.latency[0].samples / a.latency[0].poolSize * 100).toFixed(1)
  } points. A \`select 1\` round trip on the same connection takes
${a.roundTripMedianMs} ms (median).

${latency}

Latency at 99% full over latency at 1% full: **${a.latencyRatio}x**. Goal at
most 1.5x: ${verdict(a.latencyRatio <= 1.5)}. The allocator reads the first
entry of the partial index of free rows, so its cost does not grow with the
fill level. The candidate query at 99% full:

\`\`\`
${plan99}
\`\`\`

The last row is a pool right after \`populate_nebula_ip_pool()\` in a
database where \`nebula_ip_pool\` had never been analyzed. Before migration
20261205020000, the planner then picked the unique constraint on
\`(project_id, device_id)\` for \`device_id is null\` and sorted every free
row for each allocation, until autovacuum analyzed the table. The
constraint is now a partial unique index over allocated rows only, and
\`populate_nebula_ip_pool()\` analyzes the table after adding a large
prefix, so this row costs ${a.unanalyzed.medianMs} ms against
${a.latency[0].medianMs} ms on an analyzed pool.
`;
}

function populationSection(a: AllocationFigures): string {
  return `## 3. Pool population

\`populate_nebula_ip_pool()\` on a new project, one lighthouse reserved.

${
    table(
      ["prefix", "addresses", "runs", "median"],
      a.population.map((
        p,
      ) => [p.prefix, p.addresses, p.runs, `${p.medianMs} ms`]),
    )
  }
`;
}

function profileTable(profile: RegistrationProfile): string {
  return table(
    ["statement", "calls", "median ms per registration"],
    profile.statements.slice(0, 8).map((s) => [
      `\`${s.statement.replaceAll("|", "\\|")}\``,
      s.callsPerRegistration,
      s.medianMsPerRegistration,
    ]),
  );
}

function serverTable(profile: RegistrationProfile): string {
  return table(
    ["function", "calls per registration", "mean ms per call"],
    profile.serverFunctions.map((f) => [
      `\`${f.name}\``,
      f.callsPerRegistration,
      f.meanMsPerCall,
    ]),
  );
}

/** Functions a registration calls from JavaScript; the others run inside them. */
const TOP_LEVEL_FUNCTIONS = new Set([
  "take_rate_limit_token",
  "register_nebula_device",
  "record_nebula_certificate",
  "append_audit_event",
]);

function profileParagraphs(
  profile: RegistrationProfile,
  floor: FloorFigure,
): string {
  const serverMs = profile.serverFunctions
    .filter((f) => TOP_LEVEL_FUNCTIONS.has(f.name))
    .reduce((sum, f) => sum + f.meanMsPerCall * f.callsPerRegistration, 0);
  const javaScriptMs = profile.handlerMedianMs - profile.databaseMedianMs;
  return `
Where a registration's time goes: the handler called in-process on the same
kind of database, every statement timed (${profile.samples} registrations on
a new project whose pool was then analyzed). Handler median
${profile.handlerMedianMs} ms, of which statements were running for
${profile.databaseMedianMs} ms (the user check and the rate limit run at
the same time and count once); the transaction spans
${profile.transactionMedianMs} ms. The statements, slowest first:

${profileTable(profile)}

Time inside the server, per call of each SQL function
(\`pg_stat_user_functions\`, nested calls included):

${serverTable(profile)}

What bounds it: waiting for the database takes
${
    (profile.databaseMedianMs / floor.medianMs).toFixed(1)
  } floors on its own. About
${round(serverMs)} ms of it is work inside the server: key and foreign-key
checks, index upkeep, the allocation and the audit row's hash. The rest is
round trips and the postgres.js and Deno I/O around them. With prepared
statements off, as Supabase's transaction pooler needs, postgres.js sends a
statement with parameters in two round trips: one to learn the parameter
types, one to run it. Beside the floor, \`select $1::int\` took
${floor.parameterRoundTripMedianMs} ms against ${floor.roundTripMedianMs} ms
for \`select 1\`. The other ${
    round(javaScriptMs)
  } ms of the handler are the begin and commit round trips and JavaScript: the
token check, unsealing the CA key and signing, nebula.yml, the ZIP (${floor.zipMedianMs} ms
in the floor) and the JSON response.

Done to get here: a registration calls two SQL functions in its
transaction, \`register_nebula_device\` (role, device claim, key checks,
address, CAs, lighthouses and blocklist) and \`record_nebula_certificate\`
with the audit row in the same statement, instead of about fifteen
statements. The user check and the rate limit run at once. Rate-limit
buckets and the blocklist are read through indexes, so their cost no longer
grows with the number of devices and certificates. Public keys are checked
for small order without a key agreement, and the JWT secret and the
key-encryption key are imported once per process.
`;
}

function registrationSection(
  r: RegistrationFigures,
  profile: RegistrationProfile | undefined,
  cores: number,
): string {
  const rows = [
    [
      "1, new project (pool not analyzed)",
      r.coldRun.requests,
      r.coldRun.failed,
      r.coldRun.perSecond,
      `${r.coldRun.medianMs} ms`,
      `${r.coldRun.p99Ms} ms`,
    ],
    ...r.runs.map((run) => [
      `${run.concurrency}`,
      run.requests,
      run.failed,
      run.perSecond,
      `${run.medianMs} ms`,
      `${run.p99Ms} ms`,
    ]),
  ];
  const f = r.floor;
  const profileText = profile ? profileParagraphs(profile, f) : "";

  return `## 4. Registration over HTTP

\`POST /functions/v1/nebula-register\` (JSON response with the base64 bundle)
sent to the local stack (\`local/server.ts\`, its own process) on PostgreSQL,
a new device and a new key per request, from a client in the benchmark
process on the same ${cores}-core machine. The first row is a project created
just before, as a user would register right after setting it up; then
\`nebula_ip_pool\` is analyzed${
    r.coldRun.autoanalyzed
      ? " (autovacuum had already analyzed it during the first row)"
      : ""
  } and the concurrency levels run on the same project.

${
    table([
      "concurrency",
      "requests",
      "failed",
      "registrations/s",
      "median",
      "p99",
    ], rows)
  }

Floor, measured in-process right after the first level: one database round
trip (${f.roundTripMedianMs} ms) + one signature (${f.signMedianMs} ms) + one
ZIP bundle (${f.zipMedianMs} ms) = **${f.medianMs} ms** median
(${f.samples} samples).

Median at concurrency 1 over the floor: **${r.ratioToFloor}x** with an analyzed
pool, **${r.coldRatioToFloor}x** on the new project. Goal at most 3x:
${verdict(r.ratioToFloor <= 3)} (analyzed), ${
    verdict(r.coldRatioToFloor <= 3)
  } (new project).
${profileText}`;
}

function memorySection(r: RegistrationFigures): string {
  return `## 5. Memory

Peak resident memory (\`VmHWM\` in \`/proc/<pid>/status\`) of the local stack
process: **${r.memory.startupPeakMiB} MiB** once listening,
**${r.memory.peakMiB} MiB** after every registration level above (resident
at the end: ${r.memory.residentMiB} MiB).
`;
}

function overlaySection(o: OverlayFigures | { skipped: string }): string {
  if ("skipped" in o) {
    return `## 6. Nebula overlay throughput\n\nSkipped: ${o.skipped}.\n`;
  }

  const inClaim = o.ratio >= 0.8 && o.ratio <= 0.95;
  const rate = `${o.linkRate.replace("gbit", " Gbit")}/s`;
  return `## 6. Nebula overlay throughput

Two network namespaces joined by one veth pair, shaped to ${rate} with
\`tc tbf\` on both ends. \`iperf3\` TCP from one namespace to the other for
${o.secondsPerRun} s (first second omitted), ${o.rounds} round(s),
alternating. Each round measures straight over the link, then through \`nebula\` daemons running
on the same link with certificates from \`shared/pki\` and the nebula.yml
from \`shared/config\` (tun MTU ${o.nebulaMtu}, UDP socket buffers ${
    o.nebulaReadBuffer === null
      ? "left at the kernel's default"
      : `of ${o.nebulaReadBuffer / 1024 / 1024} MiB`
  }).

${
    table(["path", "median throughput"], [
      ["veth link, no overlay", `${o.plainMbps} Mbit/s`],
      ["Nebula overlay on that link", `${o.overlayMbps} Mbit/s`],
    ])
  }

Overlay over link: **${(o.ratio * 100).toFixed(0)}%**. The claim that the
overlay reaches 80-95% of the link: ${
    inClaim ? "holds here" : "**does not hold here**"
  }. Both daemons, both iperf3 ends and the shaping share this machine's
cores; separate hosts were not measured.
${cpuParagraph(o.cpu, o.nebulaMtu)}`;
}

function cpuParagraph(cpu: OverlayCpu, mtu: number): string {
  const busiest = Math.max(cpu.senderCores, cpu.receiverCores);
  const bound = cpu.machineCoresOverlay / cpu.cores >= 0.9 || busiest >= 0.9
    ? "CPU bounds the overlay here, not the link"
    : "CPU alone does not explain the gap";
  return `
CPU over the timed runs, from \`/proc\`, in cores, where 1 is one core fully
busy. The windows include starting iperf3. During the overlay runs the sending
nebula daemon used ${cpu.senderCores}, the receiving one ${cpu.receiverCores}
and the whole machine ${cpu.machineCoresOverlay} of its ${cpu.cores}; during
the plain runs the machine used ${cpu.machineCoresPlain}. Nebula encrypts or
decrypts every packet in user space and moves it through a tun device, one
packet of at most ${mtu} bytes at a time, on one thread per direction with
the default \`routines: 1\`. So ${bound}.
`;
}

/** Renders the whole report; sections that did not run are left out. */
export function renderReport(results: Results): string {
  const parts = [
    `# Benchmarks

Generated by \`npm run bench\` (\`deno run -A bench/run.ts\`), which also writes
the raw figures to \`bench/results.json\`. Do not edit by hand: run it again.
`,
    machineSection(results),
  ];
  if (results.signing) parts.push(signingSection(results.signing));
  if (results.allocation) {
    parts.push(allocationSection(results.allocation));
    parts.push(populationSection(results.allocation));
  }
  if (results.registration) {
    parts.push(
      registrationSection(
        results.registration,
        results.registrationProfile,
        results.machine.cores,
      ),
    );
    parts.push(memorySection(results.registration));
  }
  if (results.overlay) parts.push(overlaySection(results.overlay));

  return parts.join("\n");
}
