/**
 * The one place that turns errors into RFC 9457 problem details. Typed
 * errors keep their status and code; anything else becomes a generic 500
 * whose cause is logged by the caller and never echoed.
 */
import {
  MethodNotAllowedError,
  ProblemError,
  RateLimitedError,
} from "../errors.ts";

export const PROBLEM_TYPE_BASE = "https://vidsync.app/problems/";

export function problemResponse(
  error: unknown,
  requestId: string,
  instance: string,
): Response {
  const problem = error instanceof ProblemError ? error : null;
  const status = problem?.status ?? 500;
  const code = problem?.code ?? "internal_error";
  const body = {
    type: `${PROBLEM_TYPE_BASE}${code}`,
    title: problem?.title ?? "Internal server error",
    status,
    detail: problem?.detail ??
      `The request failed unexpectedly; retry later and quote request id ${requestId}`,
    code,
    instance,
    requestId,
    ...(problem?.extensions ?? {}),
  };

  const headers = new Headers({ "content-type": "application/problem+json" });
  if (error instanceof RateLimitedError) {
    for (const [name, value] of Object.entries(error.headers)) {
      headers.set(name, value);
    }
    headers.set("retry-after", String(error.retryAfterSeconds));
  }
  if (error instanceof MethodNotAllowedError) {
    headers.set("allow", [...error.allow, "OPTIONS"].join(", "));
  }
  return new Response(JSON.stringify(body), { status, headers });
}
