import assert from "node:assert/strict";
import { createTestDatabase } from "../support/db.ts";
import type { Db } from "../../shared/db/port.ts";
import { sqlState } from "../../shared/db/errors.ts";
import { ForbiddenError } from "../../shared/errors.ts";
import {
  appendAuditEvent,
  appendAuditRefusal,
  type AuditContext,
  verifyAuditChain,
} from "../../shared/audit/mod.ts";

const PROJECT = "3f1c2a56-0d7e-4b8a-9a51-6c0f7d2e8b11";
const OTHER_PROJECT = "8d0b6e2f-5c4a-4e21-8f3d-2b7a9c1e0d44";
const CONTEXT: AuditContext = {
  actorId: null,
  actorType: "service",
  clientIp: "192.0.2.10",
  userAgent: "audit-test",
  requestId: "req-1",
};

async function appendEvents(db: Db, projectId: string, count: number) {
  for (let index = 0; index < count; index++) {
    await appendAuditEvent(db, CONTEXT, {
      projectId,
      action: "device.register",
      targetType: "device",
      targetId: `device-${index}`,
      after: { ip: `10.42.0.${index + 2}` },
    });
  }
}

/** Runs `sql` as `role` in a transaction that is rolled back, returning the SQLSTATE it failed with. */
async function failureAs(
  db: Db,
  role: string | null,
  sql: string,
): Promise<string | undefined> {
  try {
    await db.transaction(async (tx) => {
      if (role) await tx.query(`set local role ${role}`);
      await tx.query(sql);
      throw new Error(`${sql} succeeded as ${role ?? "owner"}`);
    });
  } catch (error) {
    return sqlState(error);
  }
  return undefined;
}

Deno.test("append_audit_event() chains rows per project", async () => {
  await using database = await createTestDatabase();
  const { db } = database;

  await appendEvents(db, PROJECT, 3);
  await appendEvents(db, OTHER_PROJECT, 2);
  const refusal = await appendAuditRefusal(db, CONTEXT, {
    projectId: PROJECT,
    action: "device.renew",
  }, new ForbiddenError("not yours"));

  assert.equal(refusal.seq, "4");
  assert.equal(refusal.outcome, "refused");
  assert.equal(refusal.errorCode, "forbidden");
  const rows = await db.query<{ seq: string; prev: string; hash: string }>(
    `select seq, encode(prev_hash, 'hex') as prev, encode(hash, 'hex') as hash
     from public.audit_log where project_id = $1 order by seq`,
    [PROJECT],
  );
  assert.deepEqual(rows.map((row) => String(row.seq)), ["1", "2", "3", "4"]);
  assert.equal(rows[0].prev, "0".repeat(64));
  for (let index = 1; index < rows.length; index++) {
    assert.equal(rows[index].prev, rows[index - 1].hash);
  }
  assert.equal((await verifyAuditChain(db, PROJECT)).ok, true);
  assert.equal((await verifyAuditChain(db, PROJECT)).checked, 4);
  assert.equal((await verifyAuditChain(db, OTHER_PROJECT)).checked, 2);
});

Deno.test("append_audit_event() stores before and after as objects", async () => {
  await using database = await createTestDatabase();
  const { db } = database;

  await appendAuditEvent(db, CONTEXT, {
    projectId: PROJECT,
    action: "certificate.revoke",
    targetType: "certificate",
    targetId: "fingerprint-1",
    before: { reason: "key_changed" },
    after: { reason: "laptop stolen" },
  });
  const [row] = await db.query<
    { before_type: string; after_type: string; reason: string }
  >(
    `select jsonb_typeof(before) as before_type, jsonb_typeof(after) as after_type,
       before ->> 'reason' as reason
     from public.audit_log where project_id = $1`,
    [PROJECT],
  );

  assert.equal(row.before_type, "object");
  assert.equal(row.after_type, "object");
  assert.equal(row.reason, "key_changed");
  assert.equal((await verifyAuditChain(db, PROJECT)).ok, true);
});

Deno.test("append_audit_event() keeps one chain under concurrent writers", async () => {
  await using database = await createTestDatabase();
  const pools = [0, 1, 2, 3].map(() => database.connect({ max: 5 }));

  await Promise.all(
    Array.from(
      { length: 40 },
      (_, index) => appendEvents(pools[index % 4], PROJECT, 1),
    ),
  );

  const verification = await verifyAuditChain(database.db, PROJECT);
  assert.equal(verification.ok, true, verification.reason ?? "");
  assert.equal(verification.checked, 40);
});

Deno.test("append_audit_event() rejects a refusal without error code", async () => {
  await using database = await createTestDatabase();

  await assert.rejects(
    () =>
      appendAuditEvent(database.db, CONTEXT, {
        projectId: PROJECT,
        action: "device.renew",
        outcome: "refused",
      }),
    (error) => sqlState(error) === "VS102",
  );

  const rows = await database.db.query("select 1 from public.audit_log");
  assert.equal(rows.length, 0);
});

Deno.test("audit_log refuses update, delete and truncate for every role", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  await appendEvents(db, PROJECT, 2);

  const statements = [
    "update public.audit_log set action = 'device.forged'",
    "delete from public.audit_log",
    "truncate public.audit_log",
  ];
  for (const role of ["anon", "authenticated", "service_role", null]) {
    for (const statement of statements) {
      const code = await failureAs(db, role, statement);
      // API roles lack the privilege (42501); the owner hits the trigger (VS101).
      const expected = role === null ? "VS101" : "42501";
      assert.equal(code, expected, `${statement} as ${role ?? "owner"}`);
    }
  }

  const verification = await verifyAuditChain(db, PROJECT);
  assert.equal(verification.ok, true);
  assert.equal(verification.checked, 2);
});

Deno.test("audit_log refuses inserts that bypass the chain", async () => {
  await using database = await createTestDatabase();

  for (const role of ["anon", "authenticated", "service_role"]) {
    const code = await failureAs(
      database.db,
      role,
      `insert into public.audit_log (project_id, seq, occurred_at, actor_type, action,
         outcome, prev_hash, hash)
       values ('${PROJECT}', 1, now(), 'user', 'device.forged', 'allowed',
         sha256(''), sha256(''))`,
    );
    assert.equal(code, "42501", role);
  }
});

Deno.test("verify_audit_chain() catches a row altered by the owner", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  await appendEvents(db, PROJECT, 5);

  await db.query(
    "alter table public.audit_log disable trigger audit_log_no_update_delete",
  );
  await db.query(
    'update public.audit_log set after = \'{"ip": "10.42.0.99"}\' where project_id = $1 and seq = 3',
    [PROJECT],
  );
  await db.query(
    "alter table public.audit_log enable trigger audit_log_no_update_delete",
  );

  const verification = await verifyAuditChain(db, PROJECT);
  assert.equal(verification.ok, false);
  assert.equal(verification.brokenSeq, "3");
  assert.equal(verification.checked, 2);
  assert.match(verification.reason ?? "", /hash does not match/);
});

Deno.test("verify_audit_chain() catches a rehashed row by its successor", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  await appendEvents(db, PROJECT, 4);

  // A forger who recomputes the altered row's own hash still breaks the link.
  await db.query(
    "alter table public.audit_log disable trigger audit_log_no_update_delete",
  );
  await db.query(
    `update public.audit_log a set action = 'device.forged'
     where project_id = $1 and seq = 2`,
    [PROJECT],
  );
  await db.query(
    `update public.audit_log a set hash = public.audit_log_row_hash(a.prev_hash, a)
     where project_id = $1 and seq = 2`,
    [PROJECT],
  );
  await db.query(
    "alter table public.audit_log enable trigger audit_log_no_update_delete",
  );

  const verification = await verifyAuditChain(db, PROJECT);
  assert.equal(verification.ok, false);
  assert.equal(verification.brokenSeq, "3");
  assert.match(verification.reason ?? "", /prev_hash/);
});

Deno.test("verify_audit_chain() catches deleted rows", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  await appendEvents(db, PROJECT, 4);
  await appendEvents(db, OTHER_PROJECT, 3);

  await db.query(
    "alter table public.audit_log disable trigger audit_log_no_update_delete",
  );
  await db.query(
    "delete from public.audit_log where project_id = $1 and seq = 2",
    [PROJECT],
  );
  await db.query(
    "delete from public.audit_log where project_id = $1 and seq = 3",
    [
      OTHER_PROJECT,
    ],
  );
  await db.query(
    "alter table public.audit_log enable trigger audit_log_no_update_delete",
  );

  const middle = await verifyAuditChain(db, PROJECT);
  assert.equal(middle.ok, false);
  assert.match(middle.reason ?? "", /sequence gap/);
  const tail = await verifyAuditChain(db, OTHER_PROJECT);
  assert.equal(tail.ok, false);
  assert.match(tail.reason ?? "", /head records seq 3/);
});

Deno.test("audit_log is readable by project admins only", async () => {
  await using database = await createTestDatabase();
  const { db } = database;
  const [admin, member] = await db.query<{ id: string }>(
    "insert into auth.users (email) values ('admin@example.test'), ('member@example.test') returning id",
  );
  await db.query(
    `insert into public.projects (id, name, cidr, created_by) values ($1, 'audit', '10.42.0.0/24', $2)`,
    [PROJECT, admin.id],
  );
  await db.query(
    `insert into public.project_members (project_id, user_id, role)
     values ($1, $2, 'admin'), ($1, $3, 'member')`,
    [PROJECT, admin.id, member.id],
  );
  await appendEvents(db, PROJECT, 2);
  await appendEvents(db, OTHER_PROJECT, 1);

  const visibleTo = (userId: string) =>
    db.transaction(async (tx) => {
      await tx.query("select set_config('request.jwt.claims', $1, true)", [
        JSON.stringify({ sub: userId, role: "authenticated" }),
      ]);
      await tx.query("set local role authenticated");
      return await tx.query("select project_id from public.audit_log");
    });

  assert.equal((await visibleTo(admin.id)).length, 2);
  assert.equal((await visibleTo(member.id)).length, 0);
});
