/** Transactions held open on purpose, to test how other sessions wait for their row locks. */
import type { Db } from "../../shared/db/port.ts";

/** A transaction whose work has run and that stays open until `commit()` or `rollBack()`. */
export interface HeldTransaction<T> {
  /** Resolves with the work's result while the transaction is still open. */
  ready: Promise<T>;
  commit(): Promise<void>;
  rollBack(): Promise<void>;
}

class RollBack extends Error {}

/** Runs `work` in a transaction on `db` and keeps that transaction open. */
export function holdTransaction<T>(
  db: Db,
  work: (tx: Db) => Promise<T>,
): HeldTransaction<T> {
  let decide!: (commit: boolean) => void;
  const decision = new Promise<boolean>((resolve) => {
    decide = resolve;
  });
  let resolveReady!: (value: T) => void;
  let rejectReady!: (error: unknown) => void;
  const ready = new Promise<T>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });

  const done = db.transaction(async (tx) => {
    resolveReady(await work(tx));
    if (!(await decision)) throw new RollBack();
  }).catch((error) => {
    // An error thrown by `work` reaches the caller through `ready`.
    if (!(error instanceof RollBack)) rejectReady(error);
  });

  return {
    ready,
    commit: () => {
      decide(true);
      return done;
    },
    rollBack: () => {
      decide(false);
      return done;
    },
  };
}

/**
 * Waits until a session of this database whose query contains `queryPart`
 * waits for a lock; throws after `timeoutMs`.
 */
export async function waitForLockWait(
  db: Db,
  queryPart: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const rows = await db.query(
      `select 1 from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock'
         and pid <> pg_backend_pid() and position($1 in query) > 0`,
      [queryPart],
    );
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(
    `no session running "${queryPart}" waited for a lock within ${timeoutMs} ms`,
  );
}
