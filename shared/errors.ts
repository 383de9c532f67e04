/**
 * Errors by meaning. Each carries the HTTP status and a stable snake_case
 * `code`; `shared/http/problem.ts` is the one place that turns them into
 * RFC 9457 problem details. Any other error becomes a generic 500.
 */

/** One failing input field, as listed in a 400 problem document. */
export interface FieldIssue {
  field: string;
  message: string;
}

export interface ProblemOptions {
  detail?: string;
  /** Extra members of the problem document (RFC 9457 extensions). */
  extensions?: Record<string, unknown>;
  cause?: unknown;
}

export class ProblemError extends Error {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  readonly extensions: Record<string, unknown>;

  constructor(
    status: number,
    code: string,
    title: string,
    options: ProblemOptions = {},
  ) {
    super(options.detail ?? title, { cause: options.cause });
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.title = title;
    this.detail = options.detail ?? title;
    this.extensions = options.extensions ?? {};
  }
}

/** 400: the request is malformed or a field fails validation. */
export class InvalidInputError extends ProblemError {
  readonly errors: FieldIssue[];

  constructor(
    detail: string,
    errors: FieldIssue[] = [],
    code = "invalid_input",
  ) {
    super(400, code, "Invalid input", {
      detail,
      extensions: errors.length > 0 ? { errors } : {},
    });
    this.errors = errors;
  }
}

/** 401: the access token is missing, malformed, expired or not trusted. */
export class UnauthorizedError extends ProblemError {
  constructor(detail: string, code = "invalid_token") {
    super(401, code, "Unauthorized", { detail });
  }
}

/** 403: the caller is known but may not do this. */
export class ForbiddenError extends ProblemError {
  constructor(detail: string, code = "forbidden") {
    super(403, code, "Forbidden", { detail });
  }
}

/** 404: the project, device or route does not exist (or is not visible). */
export class NotFoundError extends ProblemError {
  constructor(detail: string, code = "not_found") {
    super(404, code, "Not found", { detail });
  }
}

/** 405: the route exists but not for this method. */
export class MethodNotAllowedError extends ProblemError {
  readonly allow: string[];

  constructor(method: string, allow: string[]) {
    super(405, "method_not_allowed", "Method not allowed", {
      detail: `Method ${method} is not allowed here; use ${allow.join(", ")}`,
    });
    this.allow = allow;
  }
}

/** 409: the request conflicts with the current state. */
export class ConflictError extends ProblemError {
  constructor(
    detail: string,
    code: string,
    extensions: Record<string, unknown> = {},
  ) {
    super(409, code, "Conflict", { detail, extensions });
  }
}

/** 409 `pool_exhausted`: no free address is left in the project's pool. */
export class PoolExhaustedError extends ConflictError {
  constructor(detail: string, extensions: Record<string, unknown> = {}) {
    super(detail, "pool_exhausted", extensions);
  }
}

/** 413: the request body is larger than the endpoint accepts. */
export class PayloadTooLargeError extends ProblemError {
  constructor(limitBytes: number) {
    super(413, "payload_too_large", "Payload too large", {
      detail: `The request body exceeds ${limitBytes} bytes`,
    });
  }
}

/** 415: the request body is not JSON. */
export class UnsupportedMediaTypeError extends ProblemError {
  constructor(contentType: string | null) {
    super(415, "unsupported_media_type", "Unsupported media type", {
      detail: `Content-Type ${
        contentType ?? "(none)"
      } is not supported; send application/json`,
    });
  }
}

/** 429: a rate limit is exhausted; retry after `retryAfterSeconds`. */
export class RateLimitedError extends ProblemError {
  readonly retryAfterSeconds: number;
  /** Extra response headers, such as RateLimit-Limit of the empty bucket. */
  readonly headers: Record<string, string>;

  constructor(
    detail: string,
    retryAfterSeconds: number,
    headers: Record<string, string> = {},
  ) {
    super(429, "rate_limited", "Too many requests", {
      detail,
      extensions: { retryAfter: retryAfterSeconds },
    });
    this.retryAfterSeconds = retryAfterSeconds;
    this.headers = headers;
  }
}

/** 503: the database cannot be reached or refused the connection. */
export class DatabaseUnavailableError extends ProblemError {
  constructor(cause?: unknown) {
    super(503, "database_unavailable", "Service unavailable", {
      detail: "The database is unavailable; retry in a few seconds",
      cause,
    });
  }
}
