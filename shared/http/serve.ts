/**
 * Wraps a function's routes into a `Request -> Response` handler: CORS and
 * preflight, routing below `/<function name>` (with or without the
 * `/functions/v1` prefix), problem details for every error, and one log line
 * per request.
 */
import { MethodNotAllowedError, NotFoundError } from "../errors.ts";
import { withCors } from "./cors.ts";
import { describeError, type Logger } from "./log.ts";
import { problemResponse } from "./problem.ts";

export interface RequestContext {
  request: Request;
  url: URL;
  params: Record<string, string>;
  requestId: string;
  /** Ids the handler learns; they go into the request's log line. */
  logFields: { projectId?: string; deviceId?: string; userId?: string };
}

export interface Route {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  /** Path below the function name, e.g. `/:deviceId` or `/` ; `:name` captures one segment. */
  path: string;
  handle(context: RequestContext): Promise<Response>;
}

export type FetchHandler = (request: Request) => Promise<Response>;

function match(
  pattern: string,
  segments: string[],
): Record<string, string> | null {
  const parts = pattern.split("/").filter(Boolean);
  if (parts.length !== segments.length) return null;
  const params: Record<string, string> = {};
  for (let index = 0; index < parts.length; index++) {
    if (parts[index].startsWith(":")) {
      params[parts[index].slice(1)] = segments[index];
    } else if (parts[index] !== segments[index]) return null;
  }
  return params;
}

/** Segments after `/<name>`, or null when the path is not this function's. */
function segmentsBelow(name: string, pathname: string): string[] | null {
  const segments = pathname.split("/").filter(Boolean);
  const index = segments.indexOf(name);
  if (index < 0) return null;
  try {
    return segments.slice(index + 1).map(decodeURIComponent);
  } catch {
    return null;
  }
}

function newRequestId(request: Request): string {
  const given = request.headers.get("x-request-id");
  return given && /^[\w.-]{8,100}$/.test(given) ? given : crypto.randomUUID();
}

async function dispatch(
  name: string,
  routes: Route[],
  context: RequestContext,
): Promise<Response> {
  const segments = segmentsBelow(name, context.url.pathname);
  if (!segments) {
    throw new NotFoundError(`No such path: ${context.url.pathname}`);
  }

  const candidates = routes
    .map((route) => ({ route, params: match(route.path, segments) }))
    .filter((candidate) => candidate.params !== null);
  if (candidates.length === 0) {
    throw new NotFoundError(`No such path: ${context.url.pathname}`);
  }

  const found = candidates.find((candidate) =>
    candidate.route.method === context.request.method
  );
  if (!found) {
    throw new MethodNotAllowedError(
      context.request.method,
      candidates.map((candidate) => candidate.route.method),
    );
  }
  context.params = found.params!;
  return await found.route.handle(context);
}

export function createFunctionHandler(
  name: string,
  routes: Route[],
  logger: Logger,
): FetchHandler {
  return async function handleFunctionRequest(
    request: Request,
  ): Promise<Response> {
    const started = performance.now();
    const requestId = newRequestId(request);
    if (request.method === "OPTIONS") {
      return withCors(
        new Response(null, {
          status: 204,
          headers: { "x-request-id": requestId },
        }),
      );
    }

    const url = new URL(request.url);
    const context: RequestContext = {
      request,
      url,
      params: {},
      requestId,
      logFields: {},
    };
    let response: Response;
    try {
      response = await dispatch(name, routes, context);
    } catch (error) {
      response = problemResponse(error, requestId, url.pathname);
      if (response.status >= 500) {
        logger.error("request failed", {
          function: name,
          requestId,
          ...context.logFields,
          ...describeError(error),
        });
      }
    }

    response.headers.set("x-request-id", requestId);
    logger.info("request", {
      function: name,
      requestId,
      method: request.method,
      ...context.logFields,
      status: response.status,
      durationMs: Math.round(performance.now() - started),
    });
    return withCors(response);
  };
}

export function json(
  body: unknown,
  status = 200,
  headers: HeadersInit = {},
): Response {
  const response = new Response(JSON.stringify(body), { status, headers });
  response.headers.set("content-type", "application/json");
  return response;
}
