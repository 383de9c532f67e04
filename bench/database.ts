/** Benchmark database setup shared by the registration benchmarks. */
import postgres from "postgres";

/**
 * Lifts the rate limits in a benchmark database, because the benchmarks
 * measure registration, not the limiter refusing one client's burst.
 */
export async function liftRateLimits(databaseUrl: string): Promise<void> {
  const database = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await database.unsafe(
      "update public.rate_limit_policies set capacity = 1000000, refill_per_second = 1000000",
    );
  } finally {
    await database.end();
  }
}
