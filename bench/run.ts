/**
 * `npm run bench`: starts a throwaway PostgreSQL cluster, builds the migrated
 * template database the tests use, runs every benchmark once, and writes the
 * raw figures to bench/results.json and the report to docs/BENCHMARKS.md.
 *
 * BENCH_QUICK=1 runs fewer samples, for iteration; BENCH_ONLY=allocation,overlay
 * (a comma-separated subset of signing, allocation, registration, overlay)
 * runs only those sections. Not a test: nothing here passes or fails on a figure.
 */
import { type AllocationFigures, benchmarkAllocation } from "./allocation.ts";
import { describeMachine, type Machine } from "./machine.ts";
import {
  benchmarkOverlay,
  type OverlayFigures,
  overlayUnavailable,
} from "./overlay.ts";
import {
  profileRegistration,
  type RegistrationProfile,
} from "./profile_registration.ts";
import {
  benchmarkRegistration,
  type RegistrationFigures,
} from "./registration.ts";
import { renderReport } from "./report.ts";
import { benchmarkSigning, type SigningFigures } from "./sign.ts";
import { quickMode } from "./stats.ts";
import { findPostgresBinDir, startCluster } from "../tests/support/cluster.ts";
import { buildTemplate } from "../tests/support/template.ts";

const ROOT = new URL("../", import.meta.url);
const SECTIONS = ["signing", "allocation", "registration", "overlay"] as const;
type Section = typeof SECTIONS[number];

export interface Results {
  startedAt: string;
  quick: boolean;
  durationSeconds: number;
  machine: Machine;
  signing?: SigningFigures;
  allocation?: AllocationFigures;
  registration?: RegistrationFigures;
  registrationProfile?: RegistrationProfile;
  overlay?: OverlayFigures | { skipped: string };
}

const SIZES = {
  quick: {
    signingSamples: 30,
    allocation: {
      throughputAllocations: 600,
      latencySamples: 100,
      populationRuns: 1,
    },
    registration: {
      levels: [
        { concurrency: 1, requests: 50 },
        { concurrency: 16, requests: 160 },
        { concurrency: 64, requests: 320 },
      ],
      floorSamples: 100,
    },
    profileSamples: 50,
    overlay: { rounds: 1, seconds: 3 },
  },
  full: {
    signingSamples: 200,
    allocation: {
      throughputAllocations: 3000,
      latencySamples: 300,
      populationRuns: 3,
    },
    registration: {
      levels: [
        { concurrency: 1, requests: 200 },
        { concurrency: 16, requests: 800 },
        { concurrency: 64, requests: 1600 },
      ],
      floorSamples: 300,
    },
    profileSamples: 150,
    overlay: { rounds: 3, seconds: 5 },
  },
};

function selectedSections(): Set<Section> {
  const only = Deno.env.get("BENCH_ONLY");
  if (!only) return new Set(SECTIONS);

  const names = only.split(",").map((name) => name.trim());
  const unknown = names.filter((name) => !SECTIONS.includes(name as Section));
  if (unknown.length > 0) {
    throw new Error(
      `BENCH_ONLY has unknown sections ${unknown.join(", ")}; use ${
        SECTIONS.join(", ")
      }`,
    );
  }
  return new Set(names as Section[]);
}

function progress(message: string): void {
  console.error(`bench: ${message}`);
}

async function runSections(
  serverUrl: string,
  sections: Set<Section>,
  results: Results,
): Promise<void> {
  const sizes = results.quick ? SIZES.quick : SIZES.full;
  if (sections.has("signing")) {
    progress("signing");
    results.signing = await benchmarkSigning(sizes.signingSamples);
  }
  if (sections.has("allocation")) {
    progress("allocation and pool population");
    results.allocation = await benchmarkAllocation(serverUrl, sizes.allocation);
  }
  if (sections.has("registration")) {
    progress("registration over HTTP");
    results.registration = await benchmarkRegistration(
      serverUrl,
      sizes.registration,
    );
    progress("registration profile");
    results.registrationProfile = await profileRegistration(
      serverUrl,
      sizes.profileSamples,
    );
  }
  if (sections.has("overlay")) {
    const unavailable = overlayUnavailable();
    progress(unavailable ? `overlay skipped: ${unavailable}` : "overlay");
    results.overlay = unavailable
      ? { skipped: unavailable }
      : await benchmarkOverlay(sizes.overlay.rounds, sizes.overlay.seconds);
  }
}

async function main(): Promise<void> {
  const sections = selectedSections();
  const started = performance.now();
  const results: Results = {
    startedAt: new Date().toISOString(),
    quick: quickMode(),
    durationSeconds: 0,
    machine: await describeMachine(findPostgresBinDir()),
  };

  const cluster = await startCluster();
  try {
    await buildTemplate(cluster.url);
    await runSections(cluster.url, sections, results);
  } finally {
    await cluster.stop();
  }
  results.durationSeconds = Math.round((performance.now() - started) / 1000);

  await Deno.writeTextFile(
    new URL("bench/results.json", ROOT),
    JSON.stringify(results, null, 2) + "\n",
  );
  const reportPath = new URL("docs/BENCHMARKS.md", ROOT);
  await Deno.writeTextFile(reportPath, renderReport(results));
  await formatMarkdown(reportPath);
  progress(
    `done in ${results.durationSeconds} s: bench/results.json, docs/BENCHMARKS.md`,
  );
}

/** Runs `deno fmt` on the report, so the page is committed as `deno fmt --check` expects. */
async function formatMarkdown(path: URL): Promise<void> {
  const { success, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", path.pathname],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) {
    throw new Error(
      `deno fmt failed on ${path.pathname}: ${
        new TextDecoder().decode(stderr)
      }`,
    );
  }
}

if (import.meta.main) await main();
