/**
 * Allocator behaviour that must hold on both databases the product runs on:
 * PostgreSQL (production, tests) and the embedded PGlite (`npm start`).
 */
import assert from "node:assert/strict";
import type { Db } from "../../shared/db/port.ts";
import {
  allocateIp,
  assignLighthouseIp,
  getDeviceAllocation,
  getPoolUsage,
  listAllocations,
  populatePool,
  releaseDevice,
} from "../../shared/allocator/mod.ts";
import {
  InvalidInputError,
  NotFoundError,
  PoolExhaustedError,
} from "../../shared/errors.ts";
import {
  createDevices,
  createPoolProject,
  recordCertificate,
} from "./fixtures.ts";

const HOUR = 3_600_000;

export function defineAllocatorSuite(label: string, open: () => Promise<Db>) {
  let shared: Promise<Db> | undefined;
  const database = () => (shared ??= open());

  const test = (name: string, fn: (db: Db) => Promise<void>) =>
    Deno.test({
      name: `${name} (${label})`,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => fn(await database()),
    });

  test("allocate_nebula_ip() returns lowest free address", async (db) => {
    const project = await createPoolProject(db, "10.20.0.0/24", ["10.20.0.1"]);
    const [device] = await createDevices(db, project, 1);

    const allocation = await allocateIp(db, {
      ...project,
      deviceId: device,
      allocatedBy: project.ownerId,
    });

    assert.deepEqual(allocation, { ip: "10.20.0.2", prefixLength: 24 });
  });

  test("allocate_nebula_ip() returns same ip for same device", async (db) => {
    const project = await createPoolProject(db, "10.21.0.0/24");
    const [device] = await createDevices(db, project, 1);
    const request = {
      ...project,
      deviceId: device,
      allocatedBy: project.ownerId,
    };

    const first = await allocateIp(db, request);
    const second = await allocateIp(db, request);

    assert.deepEqual(second, first);
    const history = await db.query(
      "select 1 from public.nebula_ip_allocations where project_id = $1",
      [project.projectId],
    );
    assert.equal(history.length, 1, "one history row for one allocation");
  });

  test("allocate_nebula_ip() changes exactly one pool row per call", async (db) => {
    const project = await createPoolProject(db, "10.22.0.0/28");
    const devices = await createDevices(db, project, 2);

    const first = await allocateIp(db, {
      ...project,
      deviceId: devices[0],
      allocatedBy: null,
    });
    const usageAfterFirst = await getPoolUsage(db, project.projectId);
    const second = await allocateIp(db, {
      ...project,
      deviceId: devices[1],
      allocatedBy: null,
    });
    const usageAfterSecond = await getPoolUsage(db, project.projectId);

    assert.notEqual(second.ip, first.ip);
    assert.equal(usageAfterFirst.allocated, 1);
    assert.equal(usageAfterSecond.allocated, 2);
    assert.equal(usageAfterSecond.total, 14);
  });

  test("allocate_nebula_ip() skips the lighthouse on a /30", async (db) => {
    const project = await createPoolProject(db, "10.23.0.0/30", ["10.23.0.1"]);
    const devices = await createDevices(db, project, 2);

    const first = await allocateIp(db, {
      ...project,
      deviceId: devices[0],
      allocatedBy: null,
    });
    const second = allocateIp(db, {
      ...project,
      deviceId: devices[1],
      allocatedBy: null,
    });

    assert.equal(first.ip, "10.23.0.2");
    await assert.rejects(second, PoolExhaustedError);
  });

  test("allocate_nebula_ip() reports pool usage when exhausted", async (db) => {
    const project = await createPoolProject(db, "10.24.0.0/29", ["10.24.0.1"]);
    const devices = await createDevices(db, project, 6);
    for (const device of devices.slice(0, 5)) {
      await allocateIp(db, { ...project, deviceId: device, allocatedBy: null });
    }

    const error = await allocateIp(db, {
      ...project,
      deviceId: devices[5],
      allocatedBy: null,
    })
      .then(() => null, (caught) => caught);

    assert.ok(error instanceof PoolExhaustedError, String(error));
    assert.equal(error.status, 409);
    assert.equal(error.code, "pool_exhausted");
    assert.deepEqual(error.extensions.pool, {
      total: 5,
      allocated: 5,
      quarantined: 0,
      free: 0,
    });
    const [device] = await db.query<{ nebula_ip: string | null }>(
      "select nebula_ip from public.user_devices where id = $1",
      [devices[5]],
    );
    assert.equal(device.nebula_ip, null, "the refused device has no address");
  });

  test("allocate_nebula_ip() rejects an unknown device", async (db) => {
    const project = await createPoolProject(db, "10.25.0.0/24");

    const attempt = allocateIp(db, {
      ...project,
      deviceId: crypto.randomUUID(),
      allocatedBy: null,
    });

    await assert.rejects(
      attempt,
      (error) =>
        error instanceof NotFoundError && error.code === "device_not_found",
    );
    assert.equal((await getPoolUsage(db, project.projectId)).allocated, 0);
  });

  test("release keeps the address out while a certificate is valid", async (db) => {
    const project = await createPoolProject(db, "10.26.0.0/30", ["10.26.0.1"]);
    const [holder, next] = await createDevices(db, project, 2);
    const start = new Date("2030-01-01T00:00:00Z");
    const certEnd = new Date(start.getTime() + 24 * HOUR);
    const { ip } = await allocateIp(db, {
      ...project,
      deviceId: holder,
      allocatedBy: null,
    }, start);
    await recordCertificate(db, project, holder, ip, start, certEnd);

    const release = await releaseDevice(
      db,
      { ...project, deviceId: holder },
      new Date(start.getTime() + HOUR),
    );
    const early = allocateIp(db, {
      ...project,
      deviceId: next,
      allocatedBy: null,
    }, new Date(certEnd.getTime() - 1000));
    await assert.rejects(early, PoolExhaustedError);
    const late = await allocateIp(db, {
      ...project,
      deviceId: next,
      allocatedBy: null,
    }, new Date(certEnd.getTime() + 1000));

    assert.equal(release.ip, "10.26.0.2");
    assert.deepEqual(release.quarantinedUntil, certEnd);
    assert.equal(release.revokedFingerprints.length, 1);
    assert.equal(late.ip, "10.26.0.2");
  });

  test("released addresses of a /28 all come back", async (db) => {
    const project = await createPoolProject(db, "10.27.0.0/28");
    const start = new Date("2030-02-01T00:00:00Z");
    const certEnd = new Date(start.getTime() + 48 * HOUR);
    const first = await createDevices(db, project, 14);
    const firstIps = [];
    for (const device of first) {
      const { ip } = await allocateIp(db, {
        ...project,
        deviceId: device,
        allocatedBy: null,
      }, start);
      await recordCertificate(db, project, device, ip, start, certEnd);
      firstIps.push(ip);
    }
    for (const device of first) {
      await releaseDevice(
        db,
        { ...project, deviceId: device },
        new Date(start.getTime() + HOUR),
      );
    }

    const afterQuarantine = new Date(certEnd.getTime() + 1000);
    const second = await createDevices(db, project, 14);
    const secondIps = [];
    for (const device of second) {
      secondIps.push(
        (await allocateIp(db, {
          ...project,
          deviceId: device,
          allocatedBy: null,
        }, afterQuarantine)).ip,
      );
    }

    assert.equal(new Set(firstIps).size, 14);
    assert.deepEqual([...secondIps].sort(), [...firstIps].sort());
    assert.equal(
      (await getPoolUsage(db, project.projectId, afterQuarantine)).free,
      0,
    );
  });

  test("release without certificates frees the address at once", async (db) => {
    const project = await createPoolProject(db, "10.28.0.0/30");
    const [holder, next] = await createDevices(db, project, 2);
    await allocateIp(db, { ...project, deviceId: holder, allocatedBy: null });
    await allocateIp(db, { ...project, deviceId: next, allocatedBy: null });
    const third = (await createDevices(db, project, 1))[0];

    const release = await releaseDevice(db, { ...project, deviceId: holder });
    const again = await releaseDevice(db, { ...project, deviceId: holder });
    const reused = await allocateIp(db, {
      ...project,
      deviceId: third,
      allocatedBy: null,
    });

    assert.equal(release.quarantinedUntil, null);
    assert.equal(again.ip, null, "a second release finds no address");
    assert.equal(reused.ip, release.ip);
    assert.equal(
      await getDeviceAllocation(db, project.projectId, holder),
      null,
    );
  });

  test("populate_nebula_ip_pool() skips network, broadcast and reserved", async (db) => {
    const project = await createPoolProject(db, "10.29.0.0/29", ["10.29.0.3"]);

    const rows = await db.query<{ ip: string }>(
      "select ip::text as ip from public.nebula_ip_pool where project_id = $1 order by ip",
      [project.projectId],
    );
    const again = await populatePool(db, project.projectId, "10.29.0.0/29", [
      "10.29.0.3",
    ]);

    assert.deepEqual(rows.map((row) => row.ip), [
      "10.29.0.1/29",
      "10.29.0.2/29",
      "10.29.0.4/29",
      "10.29.0.5/29",
      "10.29.0.6/29",
    ]);
    assert.equal(again, 0, "populating twice adds nothing");
  });

  test("populate_nebula_ip_pool() rejects prefixes outside /8 to /30", async (db) => {
    const project = await createPoolProject(db, "10.30.0.0/24");

    for (const cidr of ["10.31.0.0/31", "10.0.0.0/7", "fd00::/120"]) {
      await assert.rejects(
        populatePool(db, project.projectId, cidr),
        InvalidInputError,
        cidr,
      );
    }
    assert.equal((await getPoolUsage(db, project.projectId)).total, 254);
  });

  test("assign_nebula_lighthouse_ip() gives the reserved address", async (db) => {
    const project = await createPoolProject(db, "10.32.0.0/24", ["10.32.0.1"]);
    const [lighthouse] = await createDevices(db, project, 1);

    const allocation = await assignLighthouseIp(db, {
      ...project,
      deviceId: lighthouse,
      ip: "10.32.0.1",
      allocatedBy: null,
    });
    const again = await assignLighthouseIp(db, {
      ...project,
      deviceId: lighthouse,
      ip: "10.32.0.1",
      allocatedBy: null,
    });
    const listed = await listAllocations(db, project.projectId);

    assert.deepEqual(allocation, { ip: "10.32.0.1", prefixLength: 24 });
    assert.deepEqual(again, allocation);
    assert.equal(listed.length, 1);
    assert.equal(listed[0].isLighthouse, true);
    assert.equal(
      (await getPoolUsage(db, project.projectId)).allocated,
      0,
      "lighthouses are outside the pool",
    );
  });

  test("nebula_ip_allocations keeps an append-only history", async (db) => {
    const project = await createPoolProject(db, "10.33.0.0/24");
    const [device] = await createDevices(db, project, 1);
    await allocateIp(db, {
      ...project,
      deviceId: device,
      allocatedBy: project.ownerId,
    });
    await releaseDevice(db, { ...project, deviceId: device });
    await allocateIp(db, {
      ...project,
      deviceId: device,
      allocatedBy: project.ownerId,
    });

    const history = await db.query<{ released: boolean }>(
      "select released_at is not null as released from public.nebula_ip_allocations where device_id = $1 order by id",
      [device],
    );
    const rewrite = db.query(
      "update public.nebula_ip_allocations set allocated_by = null where device_id = $1",
      [device],
    );
    const erase = db.query(
      "delete from public.nebula_ip_allocations where device_id = $1",
      [device],
    );

    assert.deepEqual(history.map((row) => row.released), [true, false]);
    await assert.rejects(rewrite, /append-only/);
    await assert.rejects(erase, /append-only/);
  });
}
