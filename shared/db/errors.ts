import {
  ConflictError,
  DatabaseUnavailableError,
  InvalidInputError,
  NotFoundError,
  PoolExhaustedError,
  ProblemError,
} from "../errors.ts";

/** The fields of a PostgreSQL error that both drivers expose. */
interface PgErrorFields {
  code?: string;
  message?: string;
  detail?: string;
  hint?: string;
  constraint?: string;
  constraint_name?: string;
}

type ErrorFactory = (error: PgErrorFields) => ProblemError;

function usageFromDetail(detail = ""): Record<string, number> {
  const usage: Record<string, number> = {};
  for (const match of detail.matchAll(/(\w+)=(\d+)/g)) {
    usage[match[1]] = Number(match[2]);
  }
  return usage;
}

/** SQLSTATEs raised by the migrations' functions and constraints, mapped to typed errors. */
const SQLSTATE_ERRORS: Record<string, ErrorFactory> = {
  VS001: (e) =>
    new PoolExhaustedError(
      `No free address is left in the project's pool (${e.detail}); release idle devices or use a larger prefix`,
      { pool: usageFromDetail(e.detail) },
    ),
  VS002: () => new NotFoundError("Device not found", "device_not_found"),
  VS003: () => new NotFoundError("Project not found", "project_not_found"),
  VS004: (e) =>
    new InvalidInputError(e.message ?? "Invalid pool prefix", [
      { field: "cidr", message: "must be an IPv4 prefix from /8 to /30" },
    ]),
  VS005: (e) =>
    new InvalidInputError(e.message ?? "No such lighthouse", [
      { field: "lighthouse", message: "the project has no lighthouse for it" },
    ], "lighthouse_not_found"),
  VS006: (e) => new ConflictError(e.message ?? "", "lighthouse_taken"),
  VS007: (e) => new ConflictError(e.message ?? "", "device_has_address"),
  VS111: (e) =>
    new InvalidInputError(
      e.message ?? "Invalid rate limit request",
      [],
      "invalid_input",
    ),
  VS121: () => new NotFoundError("Certificate not found", "not_found"),
};

/** Connection-level SQLSTATE classes: the database is down or refusing us. */
const UNAVAILABLE_CLASSES = ["08", "53", "57"];

const UNAVAILABLE_NODE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
]);

/**
 * Converts a driver error into a typed error when its SQLSTATE is known.
 * Other errors are returned unchanged, and the HTTP layer turns them into 500.
 */
export function mapDatabaseError(error: unknown): unknown {
  if (error instanceof ProblemError) return error;
  if (typeof error !== "object" || error === null) return error;

  const fields = error as PgErrorFields;
  const code = fields.code ?? "";
  const factory = SQLSTATE_ERRORS[code];
  if (factory) {
    const mapped = factory(fields);
    // Keep the driver error, so tests and logs can still read the SQLSTATE.
    mapped.cause ??= error;
    return mapped;
  }

  if (UNAVAILABLE_NODE_CODES.has(code)) {
    return new DatabaseUnavailableError(error);
  }
  if (code.length === 5 && UNAVAILABLE_CLASSES.includes(code.slice(0, 2))) {
    return new DatabaseUnavailableError(error);
  }
  return error;
}

/** Returns the PostgreSQL SQLSTATE of a driver error, if it has one. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  if (error instanceof ProblemError) return sqlState(error.cause);
  const code = (error as PgErrorFields).code;
  return typeof code === "string" ? code : undefined;
}

/** Returns the constraint a unique or check violation names, if any. */
export function violatedConstraint(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const fields = error as PgErrorFields;
  return fields.constraint_name ?? fields.constraint;
}
