/**
 * Address allocation and pool population on a real PostgreSQL database
 * migrated from the test template. Allocations go through the product's
 * allocator module (`allocateIp`), so each timing includes one loopback
 * round trip to the server.
 */
import postgres from "postgres";
import { allocateIp, populatePool } from "../shared/allocator/mod.ts";
import type { Db } from "../shared/db/port.ts";
import { connectPostgres } from "../shared/db/postgres.ts";
import { TEMPLATE_NAME, withDatabase } from "../tests/support/template.ts";
import { median, p99, round, timed } from "./stats.ts";

const SLASH_16 = "10.200.0.0/16";
const SLASH_24 = "10.201.0.0/24";
// The product reserves every lighthouse address; one lighthouse is typical.
const LIGHTHOUSE_16 = "10.200.0.1";
const LIGHTHOUSE_24 = "10.201.0.1";

export interface ThroughputFigure {
  connections: number;
  allocations: number;
  seconds: number;
  perSecond: number;
}

export interface LatencyFigure {
  /** Share of the pool allocated before the timed allocations, in percent. */
  fillPercent: number;
  allocatedBefore: number;
  poolSize: number;
  samples: number;
  medianMs: number;
  p99Ms: number;
}

export interface PopulationFigure {
  prefix: string;
  addresses: number;
  runs: number;
  medianMs: number;
}

export interface AllocationFigures {
  throughput: ThroughputFigure[];
  latency: LatencyFigure[];
  /**
   * Single allocations from a /16 populated just before, in a database whose
   * pool table has no planner statistics yet (before autovacuum's first ANALYZE).
   */
  unanalyzed: LatencyFigure;
  /** Median latency at 99% full divided by median latency at 1% full. */
  latencyRatio: number;
  /** Median of `select 1` on the same connection: the round-trip share of each timing. */
  roundTripMedianMs: number;
  /** EXPLAIN ANALYZE of the allocator's candidate query at each fill level. */
  plans: { fillPercent: number; plan: string }[];
  population: PopulationFigure[];
}

export interface AllocationOptions {
  /** Allocations per connection count in the throughput runs. */
  throughputAllocations: number;
  /** Timed single allocations per fill level. */
  latencySamples: number;
  /** Repetitions of populating a /16 (a /24 is repeated 10 times as often). */
  populationRuns: number;
}

/** Clones the migrated template into a fresh database, which `drop()` removes. */
async function cloneDatabase(serverUrl: string) {
  const name = `bench_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name} template ${TEMPLATE_NAME}`);

  const drop = async () => {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  };

  return { url: withDatabase(serverUrl, name), drop };
}

async function createOwner(db: Db): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    "insert into auth.users (email) values ($1) returning id",
    [`${crypto.randomUUID()}@bench.test`],
  );
  return row.id;
}

/** Inserts a project on `cidr` (without its pool) and returns its id. */
async function createProject(
  db: Db,
  ownerId: string,
  cidr: string,
): Promise<string> {
  const [project] = await db.query<{ id: string }>(
    "insert into public.projects (name, cidr, created_by) values ('bench', $1, $2) returning id",
    [cidr, ownerId],
  );
  return project.id;
}

/** Inserts `count` device rows without an address, as registration does before allocating. */
async function createDevices(
  db: Db,
  projectId: string,
  ownerId: string,
  count: number,
): Promise<string[]> {
  const rows = await db.query<{ id: string }>(
    `insert into public.user_devices (project_id, id, owner_id, name)
     select $1, gen_random_uuid(), $2, 'bench device'
     from generate_series(1, $3::integer)
     returning id`,
    [projectId, ownerId, count],
  );
  return rows.map((row) => row.id);
}

/**
 * Allocates the `count` lowest free addresses with set-based SQL (device
 * rows, pool rows and history rows), the state the allocator would leave.
 */
async function fillPool(
  db: Db,
  projectId: string,
  ownerId: string,
  count: number,
): Promise<void> {
  if (count <= 0) return;

  await db.query(
    `insert into public.user_devices (project_id, id, owner_id, name, nebula_ip)
     select $1, gen_random_uuid(), $2, 'fill', p.ip
     from public.nebula_ip_pool p
     where p.project_id = $1 and p.device_id is null
     order by p.ip
     limit $3`,
    [projectId, ownerId, count],
  );
  await db.query(
    `update public.nebula_ip_pool p
     set device_id = d.id, allocated_at = now()
     from public.user_devices d
     where p.project_id = $1 and d.project_id = $1
       and d.nebula_ip = p.ip and p.device_id is null`,
    [projectId],
  );
  await db.query(
    `insert into public.nebula_ip_allocations (project_id, ip, device_id, allocated_by, allocated_at)
     select p.project_id, p.ip, p.device_id, $2, p.allocated_at
     from public.nebula_ip_pool p
     where p.project_id = $1 and p.device_id is not null
       and not exists (
         select 1 from public.nebula_ip_allocations a
         where a.project_id = p.project_id and a.device_id = p.device_id
       )`,
    [projectId, ownerId],
  );
  // A bulk change of this size starts autovacuum anyway; running it here
  // makes the measured state independent of when autovacuum wakes up.
  await db.exec("vacuum analyze public.nebula_ip_pool, public.user_devices");
}

async function countAllocated(db: Db, projectId: string): Promise<number> {
  const [row] = await db.query<{ allocated: string }>(
    "select count(*) as allocated from public.nebula_ip_pool where project_id = $1 and device_id is not null",
    [projectId],
  );
  return Number(row.allocated);
}

/** Runs EXPLAIN ANALYZE on the allocator's candidate query, as the migration writes it. */
async function explainCandidate(db: Db, projectId: string): Promise<string> {
  const rows = await db.transaction((tx) =>
    tx.query<{ "QUERY PLAN": string }>(
      `explain (analyze, buffers, costs off)
       select p.ip from public.nebula_ip_pool p
       where p.project_id = $1 and p.device_id is null
         and (p.quarantined_until is null or p.quarantined_until <= now())
       order by p.ip limit 1 for update skip locked`,
      [projectId],
    )
  );
  return rows.map((row) => row["QUERY PLAN"]).join("\n");
}

async function measureRoundTrip(db: Db, samples: number): Promise<number> {
  const times: number[] = [];
  for (let index = 0; index < samples; index++) {
    times.push((await timed(() => db.query("select 1"))).ms);
  }
  return median(times);
}

/** Times `samples` single allocations, one after another, on one connection. */
async function timeAllocations(
  db: Db,
  projectId: string,
  ownerId: string,
  samples: number,
): Promise<number[]> {
  const devices = await createDevices(db, projectId, ownerId, samples);
  const times: number[] = [];
  for (const deviceId of devices) {
    const { ms } = await timed(() =>
      allocateIp(db, { projectId, deviceId, allocatedBy: ownerId })
    );
    times.push(ms);
  }
  return times;
}

async function measureLatency(
  db: Db,
  options: AllocationOptions,
): Promise<
  { latency: LatencyFigure[]; plans: AllocationFigures["plans"] }
> {
  const ownerId = await createOwner(db);
  const projectId = await createProject(db, ownerId, SLASH_16);
  const poolSize = await populatePool(db, projectId, SLASH_16, [LIGHTHOUSE_16]);
  const latency: LatencyFigure[] = [];
  const plans: AllocationFigures["plans"] = [];

  for (const fillPercent of [1, 50, 99]) {
    const target = Math.floor(poolSize * fillPercent / 100);
    await fillPool(
      db,
      projectId,
      ownerId,
      target - await countAllocated(db, projectId),
    );
    const allocatedBefore = await countAllocated(db, projectId);
    plans.push({ fillPercent, plan: await explainCandidate(db, projectId) });

    const times = await timeAllocations(
      db,
      projectId,
      ownerId,
      options.latencySamples,
    );
    latency.push({
      fillPercent,
      allocatedBefore,
      poolSize,
      samples: times.length,
      medianMs: round(median(times)),
      p99Ms: round(p99(times)),
    });
  }
  return { latency, plans };
}

/** Times allocations right after populating, before the pool table has ever been analyzed. */
async function measureUnanalyzed(
  db: Db,
  samples: number,
): Promise<LatencyFigure> {
  const ownerId = await createOwner(db);
  const projectId = await createProject(db, ownerId, SLASH_16);
  const poolSize = await populatePool(db, projectId, SLASH_16, [LIGHTHOUSE_16]);
  const times = await timeAllocations(db, projectId, ownerId, samples);

  return {
    fillPercent: 0,
    allocatedBefore: 0,
    poolSize,
    samples,
    medianMs: round(median(times)),
    p99Ms: round(p99(times)),
  };
}

/** Allocates `allocations` addresses from a fresh /16 with `connections` concurrent workers. */
async function measureThroughput(
  url: string,
  setup: Db,
  connections: number,
  allocations: number,
): Promise<ThroughputFigure> {
  const ownerId = await createOwner(setup);
  const projectId = await createProject(setup, ownerId, SLASH_16);
  await populatePool(setup, projectId, SLASH_16, [LIGHTHOUSE_16]);
  const devices = await createDevices(setup, projectId, ownerId, allocations);
  await setup.exec("vacuum analyze public.nebula_ip_pool, public.user_devices");

  const pool = connectPostgres(url, { max: connections });
  try {
    // Open every connection before the clock starts.
    await Promise.all(
      Array.from({ length: connections }, () => pool.query("select 1")),
    );
    let next = 0;
    const worker = async () => {
      while (next < devices.length) {
        const deviceId = devices[next++];
        await allocateIp(pool, { projectId, deviceId, allocatedBy: ownerId });
      }
    };
    const { ms } = await timed(() =>
      Promise.all(Array.from({ length: connections }, worker))
    );

    return {
      connections,
      allocations,
      seconds: round(ms / 1000),
      perSecond: round(allocations / (ms / 1000)),
    };
  } finally {
    await pool.close();
  }
}

/** Populates a new project's pool on `cidr` `runs` times; the projects are deleted after each run. */
async function measurePopulation(
  db: Db,
  cidr: string,
  reserved: string,
  runs: number,
): Promise<PopulationFigure> {
  const ownerId = await createOwner(db);
  const times: number[] = [];
  let addresses = 0;
  for (let run = 0; run < runs; run++) {
    const projectId = await createProject(db, ownerId, cidr);
    const { ms, value } = await timed(() =>
      populatePool(db, projectId, cidr, [reserved])
    );
    times.push(ms);
    addresses = value;
    await db.query("delete from public.projects where id = $1", [projectId]);
  }

  return {
    prefix: `/${cidr.split("/")[1]}`,
    addresses,
    runs,
    medianMs: round(median(times)),
  };
}

/** Runs every allocation and population measurement on a fresh clone of the template. */
export async function benchmarkAllocation(
  serverUrl: string,
  options: AllocationOptions,
): Promise<AllocationFigures> {
  const database = await cloneDatabase(serverUrl);
  const db = connectPostgres(database.url, { max: 1 });
  try {
    // First, while the clone's pool table has never been analyzed.
    const unanalyzed = await measureUnanalyzed(db, 20);
    const population = [
      await measurePopulation(
        db,
        SLASH_24,
        LIGHTHOUSE_24,
        options.populationRuns * 10,
      ),
      await measurePopulation(
        db,
        SLASH_16,
        LIGHTHOUSE_16,
        options.populationRuns,
      ),
    ];
    const throughput: ThroughputFigure[] = [];
    for (const connections of [1, 8, 32]) {
      throughput.push(
        await measureThroughput(
          database.url,
          db,
          connections,
          options.throughputAllocations,
        ),
      );
    }
    const roundTripMedianMs = round(await measureRoundTrip(db, 200));
    const { latency, plans } = await measureLatency(db, options);

    return {
      throughput,
      latency,
      unanalyzed,
      latencyRatio: round(latency[2].medianMs / latency[0].medianMs),
      roundTripMedianMs,
      plans,
      population,
    };
  } finally {
    await db.close();
    await database.drop();
  }
}
