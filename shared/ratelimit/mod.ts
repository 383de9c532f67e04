/**
 * Token-bucket rate limits kept in Postgres (public.take_rate_limit_token).
 * Each take is one statement that locks its bucket row, so the budget holds
 * across any number of function instances sharing the database.
 */
import type { Db } from "../db/port.ts";
import { RateLimitedError } from "../errors.ts";

export type RateLimitScope = "user" | "device" | "ip";

/** One bucket to take from: per user, device or client IP, per endpoint. */
export interface RateLimitCheck {
  scope: RateLimitScope;
  /** User id, `userId/deviceId` for a device, or client IP. */
  key: string;
  /** Function name such as `nebula-register`; policies may also match `*`. */
  endpoint: string;
  /** Project whose policies apply; null uses the defaults. */
  projectId?: string | null;
  /** Tokens this request costs; defaults to 1. */
  cost?: number;
}

export interface RateLimitResult {
  allowed: boolean;
  /** Whole tokens left after this request. */
  remaining: number;
  /** Seconds until the bucket contains enough tokens again; 0 when allowed. */
  retryAfterSeconds: number;
  capacity: number;
}

interface TakeRow {
  allowed: boolean;
  remaining: number;
  retry_after_seconds: number;
  capacity: number;
}

/** Takes tokens from one bucket, refilled for the time since its last use. */
export async function takeRateLimitToken(
  db: Db,
  check: RateLimitCheck,
  now: Date = new Date(),
): Promise<RateLimitResult> {
  const rows = await db.query<TakeRow>(
    `select allowed, remaining, retry_after_seconds, capacity
     from public.take_rate_limit_token($1, $2, $3, $4, $5, $6)`,
    [
      check.scope,
      check.key,
      check.endpoint,
      check.projectId ?? null,
      check.cost ?? 1,
      now,
    ],
  );

  const row = rows[0];
  return {
    allowed: row.allowed,
    remaining: Number(row.remaining),
    retryAfterSeconds: Number(row.retry_after_seconds),
    capacity: Number(row.capacity),
  };
}

/** Takes from every bucket of `checks` in one statement, in list order. */
async function takeAll(
  db: Db,
  checks: RateLimitCheck[],
  now: Date,
): Promise<RateLimitResult[]> {
  const rows = await db.query<TakeRow>(
    `select t.allowed, t.remaining, t.retry_after_seconds, t.capacity
     from unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::int[])
       with ordinality as c (scope, key, endpoint, project_id, cost, position)
     cross join lateral public.take_rate_limit_token(
       c.scope, c.key, c.endpoint, c.project_id, c.cost, $6) as t
     order by c.position`,
    [
      checks.map((check) => check.scope),
      checks.map((check) => check.key),
      checks.map((check) => check.endpoint),
      checks.map((check) => check.projectId ?? null),
      checks.map((check) => check.cost ?? 1),
      now,
    ],
  );
  return rows.map((row) => ({
    allowed: row.allowed,
    remaining: Number(row.remaining),
    retryAfterSeconds: Number(row.retry_after_seconds),
    capacity: Number(row.capacity),
  }));
}

/**
 * Takes from every bucket of `checks`. When any of them is empty, throws
 * RateLimitedError with the longest wait and the RateLimit headers of the
 * bucket with that wait. Otherwise returns the result with the fewest tokens
 * left, for the RateLimit headers. All buckets are taken in one
 * statement (one round trip), always in list order, so concurrent requests
 * lock shared buckets in the same order.
 *
 * NOTE: a request rejected by a later bucket has still spent its token in
 * earlier ones. List the bucket that matters least (per IP) first.
 */
export async function enforceRateLimits(
  db: Db,
  checks: RateLimitCheck[],
  now: Date = new Date(),
): Promise<RateLimitResult | null> {
  if (checks.length === 0) return null;
  const results = await takeAll(db, checks, now);

  const refused = results.filter((result) => !result.allowed);
  if (refused.length > 0) {
    const slowest = refused.reduce((slow, result) =>
      result.retryAfterSeconds > slow.retryAfterSeconds ? result : slow
    );
    const wait = slowest.retryAfterSeconds;
    throw new RateLimitedError(
      `Too many requests; retry after ${wait} seconds`,
      wait,
      rateLimitHeaders(slowest),
    );
  }

  return results.reduce((low, result) =>
    result.remaining < low.remaining ? result : low
  );
}

/**
 * Response headers for a rate-limited endpoint: `Retry-After` (RFC 9110) when
 * refused, and the RateLimit-Limit / RateLimit-Remaining pair that many
 * clients read.
 */
export function rateLimitHeaders(
  result: RateLimitResult,
): Record<string, string> {
  const headers: Record<string, string> = {
    "RateLimit-Limit": String(result.capacity),
    "RateLimit-Remaining": String(result.remaining),
  };
  if (!result.allowed) {
    headers["Retry-After"] = String(result.retryAfterSeconds);
  }

  return headers;
}

/** Deletes buckets that have refilled completely; returns how many. */
export async function pruneRateLimitBuckets(
  db: Db,
  now: Date = new Date(),
): Promise<number> {
  const rows = await db.query<{ pruned: number }>(
    "select public.prune_rate_limit_buckets($1) as pruned",
    [now],
  );

  return Number(rows[0].pruned);
}
