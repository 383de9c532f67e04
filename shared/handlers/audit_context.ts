/** Builds the audit context of a request and records refusals outside the failed transaction. */
import {
  appendAuditRefusal,
  type AuditContext,
  type AuditEvent,
} from "../audit/mod.ts";
import { clientIp } from "../http/client_ip.ts";
import type { RequestContext } from "../http/serve.ts";
import type { HandlerDeps } from "./deps.ts";
import { describeError } from "../http/log.ts";

export function auditContext(
  context: RequestContext,
  userId: string | null,
): AuditContext {
  return {
    actorId: userId,
    actorType: userId ? "user" : "anonymous",
    clientIp: clientIp(context.request),
    userAgent: context.request.headers.get("user-agent"),
    requestId: context.requestId,
  };
}

/**
 * Runs `work` and records any error it throws in the audit log as a refused
 * attempt, then rethrows. The record is its own statement, because the
 * work's transaction has rolled back.
 */
export async function auditRefusals<T>(
  deps: HandlerDeps,
  audit: AuditContext,
  event: Omit<AuditEvent, "outcome" | "errorCode">,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    try {
      await appendAuditRefusal(deps.db, audit, event, error, deps.now());
    } catch (auditError) {
      deps.logger.error("audit refusal not recorded", {
        ...describeError(auditError),
        action: event.action,
      });
    }
    throw error;
  }
}
