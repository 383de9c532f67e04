/**
 * Append-only, hash-chained audit log (table public.audit_log). Rows are only
 * written through the SQL function public.append_audit_event, which extends
 * the project's chain under a row lock, so concurrent writers keep one linear
 * chain per project.
 */
import type { Db } from "../db/port.ts";
import { ProblemError } from "../errors.ts";
import { parseIpAddress } from "../http/client_ip.ts";
import { toHex } from "../pki/base64.ts";

export type ActorType = "user" | "service" | "system" | "anonymous";
export type AuditOutcome = "allowed" | "refused";

/** Actor and origin of a request, shared by every event the request records. */
export interface AuditContext {
  actorId: string | null;
  actorType: ActorType;
  clientIp?: string | null;
  userAgent?: string | null;
  requestId?: string | null;
}

/** One change or refused attempt. */
export interface AuditEvent {
  projectId: string | null;
  action: string;
  targetType?: string | null;
  targetId?: string | null;
  outcome?: AuditOutcome;
  /** Stable error code of a refusal, such as `forbidden`; required when refused. */
  errorCode?: string | null;
  before?: unknown;
  after?: unknown;
}

/** A stored audit row. */
export interface AuditRecord {
  id: string;
  projectId: string | null;
  seq: string;
  occurredAt: Date;
  action: string;
  outcome: AuditOutcome;
  errorCode: string | null;
  hash: string;
}

/** Result of public.verify_audit_chain. */
export interface ChainVerification {
  ok: boolean;
  /** Rows checked before the first broken one (all rows when ok). */
  checked: number;
  brokenId: string | null;
  brokenSeq: string | null;
  reason: string | null;
}

const USER_AGENT_MAX = 1000;
const REQUEST_ID_MAX = 200;

function truncate(
  value: string | null | undefined,
  max: number,
): string | null {
  if (value === null || value === undefined || value === "") return null;
  return value.length > max ? value.slice(0, max) : value;
}

/**
 * Serializes `value` for a `$n::text::jsonb` parameter. A parameter typed
 * jsonb would make postgres.js serialize the string again, storing a JSON
 * string instead of an object.
 */
function toJson(value: unknown): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

export interface AuditRow {
  id: string | number;
  project_id: string | null;
  seq: string | number;
  occurred_at: Date;
  action: string;
  outcome: AuditOutcome;
  error_code: string | null;
  hash: Uint8Array;
}

/** A call of public.append_audit_event, to select from on its own or inside a larger statement. */
export interface AuditCall {
  /** `public.append_audit_event(...)` with placeholders from `$first` on. */
  sql: string;
  params: unknown[];
}

/** Columns of the stored row that `toAuditRecord` reads. */
export const AUDIT_RECORD_COLUMNS =
  "id, project_id, seq, occurred_at, action, outcome, error_code, hash";

/** Builds the call that appends `event`; its placeholders start at `$first`. */
export function auditCall(
  context: AuditContext,
  event: AuditEvent,
  now: Date,
  first = 1,
): AuditCall {
  // Null unless an IP address, so a spoofed header cannot break the insert.
  const clientIp = parseIpAddress(context.clientIp);
  const n = (offset: number) => `$${first + offset}`;
  return {
    sql: `public.append_audit_event(
       p_project_id => ${n(0)}, p_actor_id => ${n(1)}, p_actor_type => ${n(2)},
       p_action => ${n(3)}, p_target_type => ${n(4)}, p_target_id => ${n(5)},
       p_outcome => ${n(6)}, p_error_code => ${n(7)},
       p_before => ${n(8)}::text::jsonb, p_after => ${n(9)}::text::jsonb,
       p_client_ip => ${n(10)}::inet, p_user_agent => ${
      n(11)
    }, p_request_id => ${n(12)},
       p_now => ${n(13)})`,
    params: [
      event.projectId,
      context.actorId,
      context.actorType,
      event.action,
      event.targetType ?? null,
      event.targetId ?? null,
      event.outcome ?? "allowed",
      event.errorCode ?? null,
      toJson(event.before),
      toJson(event.after),
      clientIp,
      truncate(context.userAgent, USER_AGENT_MAX),
      truncate(context.requestId, REQUEST_ID_MAX),
      now,
    ],
  };
}

/** Converts a row with `AUDIT_RECORD_COLUMNS` into a record. */
export function toAuditRecord(row: AuditRow): AuditRecord {
  return {
    id: String(row.id),
    projectId: row.project_id,
    seq: String(row.seq),
    occurredAt: row.occurred_at,
    action: row.action,
    outcome: row.outcome,
    errorCode: row.error_code,
    hash: toHex(row.hash),
  };
}

/**
 * Appends one event to its project's chain and returns the stored row. Run it
 * in the same transaction as the change it records. Record a refusal after
 * the failed transaction has rolled back, because it would be rolled back too.
 */
export async function appendAuditEvent(
  db: Db,
  context: AuditContext,
  event: AuditEvent,
  now: Date = new Date(),
): Promise<AuditRecord> {
  const call = auditCall(context, event, now);
  const rows = await db.query<AuditRow>(
    `select ${AUDIT_RECORD_COLUMNS} from ${call.sql}`,
    call.params,
  );
  return toAuditRecord(rows[0]);
}

/**
 * Records a refused attempt: the error's stable code when it is a typed
 * error, `internal_error` otherwise.
 */
export function appendAuditRefusal(
  db: Db,
  context: AuditContext,
  event: Omit<AuditEvent, "outcome" | "errorCode">,
  error: unknown,
  now: Date = new Date(),
): Promise<AuditRecord> {
  const errorCode = error instanceof ProblemError
    ? error.code
    : "internal_error";

  return appendAuditEvent(db, context, {
    ...event,
    outcome: "refused",
    errorCode,
  }, now);
}

interface VerificationRow {
  ok: boolean;
  checked: string | number;
  broken_id: string | number | null;
  broken_seq: string | number | null;
  reason: string | null;
}

/** Recomputes a project's chain (null: events without project) and returns ok or the first broken row. */
export async function verifyAuditChain(
  db: Db,
  projectId: string | null,
): Promise<ChainVerification> {
  const rows = await db.query<VerificationRow>(
    "select ok, checked, broken_id, broken_seq, reason from public.verify_audit_chain($1)",
    [projectId],
  );

  const row = rows[0];
  return {
    ok: row.ok,
    checked: Number(row.checked),
    brokenId: row.broken_id === null ? null : String(row.broken_id),
    brokenSeq: row.broken_seq === null ? null : String(row.broken_seq),
    reason: row.reason,
  };
}
