/**
 * Errors of the device client. Server problems (RFC 9457 documents with a
 * stable `code`) become one class per code. Local failures (network, sign-in,
 * key files, configuration directory) have their own classes. Every class
 * carries an `exitCode` so the command-line tool maps errors in one place.
 */

/** Process exit codes of `vidsync-mesh`. */
export const ExitCode = {
  ok: 0,
  other: 1,
  usage: 2,
  auth: 3,
  server: 4,
  network: 5,
} as const;

/** One failing input field, as the server lists it in a 400 problem. */
export interface FieldProblem {
  field: string;
  message: string;
}

/** The problem document returned by the API on every error. */
export interface ProblemDocument {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  instance?: string;
  errors?: FieldProblem[];
  [extension: string]: unknown;
}

/** Base class of every error the client raises. */
export class MeshClientError extends Error {
  readonly code: string;
  readonly exitCode: number;

  constructor(
    message: string,
    code: string,
    exitCode: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** The server returned a problem document or an unexpected status. */
export class MeshApiError extends MeshClientError {
  readonly status: number;
  readonly problem: ProblemDocument;

  constructor(status: number, problem: ProblemDocument) {
    const code = problem.code ?? `http_${status}`;
    const detail = problem.detail ?? problem.title ?? `HTTP ${status}`;
    const exitCode = status === 401 || status === 403
      ? ExitCode.auth
      : ExitCode.server;
    super(`${detail} (${code}, HTTP ${status})`, code, exitCode);
    this.status = status;
    this.problem = problem;
  }

  /** Failing fields of a 400 problem; empty for other statuses. */
  get fieldErrors(): FieldProblem[] {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

export class InvalidInputError extends MeshApiError {}
export class InvalidPublicKeyError extends MeshApiError {}
export class MissingTokenError extends MeshApiError {}
export class InvalidTokenError extends MeshApiError {}
export class ForbiddenError extends MeshApiError {}
export class ProjectNotFoundError extends MeshApiError {}
export class DeviceNotFoundError extends MeshApiError {}
export class NotFoundError extends MeshApiError {}
export class MethodNotAllowedError extends MeshApiError {}
export class PoolExhaustedError extends MeshApiError {}
export class DeviceOwnedByOtherUserError extends MeshApiError {}
export class PublicKeyInUseError extends MeshApiError {}
export class PayloadTooLargeError extends MeshApiError {}
export class UnsupportedMediaTypeError extends MeshApiError {}
export class DatabaseUnavailableError extends MeshApiError {}
export class InternalServerError extends MeshApiError {}

/** 429: the server requests a wait of `retryAfterSeconds` before the next try. */
export class RateLimitedError extends MeshApiError {
  get retryAfterSeconds(): number | undefined {
    const value = Number(this.problem.retryAfter);
    return Number.isFinite(value) ? value : undefined;
  }
}

type ApiErrorClass = new (
  status: number,
  problem: ProblemDocument,
) => MeshApiError;

/** The API's stable problem codes and the class each one becomes. */
export const API_ERROR_CLASSES: Readonly<Record<string, ApiErrorClass>> = {
  invalid_input: InvalidInputError,
  invalid_public_key: InvalidPublicKeyError,
  missing_token: MissingTokenError,
  invalid_token: InvalidTokenError,
  forbidden: ForbiddenError,
  project_not_found: ProjectNotFoundError,
  device_not_found: DeviceNotFoundError,
  not_found: NotFoundError,
  method_not_allowed: MethodNotAllowedError,
  pool_exhausted: PoolExhaustedError,
  device_owned_by_other_user: DeviceOwnedByOtherUserError,
  public_key_in_use: PublicKeyInUseError,
  payload_too_large: PayloadTooLargeError,
  unsupported_media_type: UnsupportedMediaTypeError,
  rate_limited: RateLimitedError,
  database_unavailable: DatabaseUnavailableError,
  internal_error: InternalServerError,
};

/** Builds the typed error for a problem document; unknown codes get the base class. */
export function apiErrorFromProblem(
  status: number,
  problem: ProblemDocument,
): MeshApiError {
  const errorClass = problem.code ? API_ERROR_CLASSES[problem.code] : undefined;

  return errorClass
    ? new errorClass(status, problem)
    : new MeshApiError(status, problem);
}

/** The server could not be reached, or the connection failed or timed out. */
export class NetworkError extends MeshClientError {
  constructor(url: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      `Could not reach ${url}: ${reason}; check the URL and the network`,
      "network_error",
      ExitCode.network,
      { cause },
    );
  }
}

/** Sign-in failed, or no credentials were given. */
export class AuthError extends MeshClientError {
  constructor(message: string, code = "auth_failed") {
    super(message, code, ExitCode.auth);
  }
}

/** The server's response does not match the API contract (a bug, or a proxy in between). */
export class UnexpectedResponseError extends MeshClientError {
  constructor(message: string) {
    super(message, "unexpected_response", ExitCode.server);
  }
}

/** A bundle or a configuration file is unusable; `file` names the one at fault. */
export class ConfigFileError extends MeshClientError {
  readonly file: string;

  constructor(file: string, message: string, code = "invalid_config_file") {
    super(`${file}: ${message}`, code, ExitCode.other);
    this.file = file;
  }
}

/** The private key does not match the public key in the host certificate. */
export class KeyPairMismatchError extends ConfigFileError {
  constructor(file: string, message: string) {
    super(file, message, "key_pair_mismatch");
  }
}

/** No configuration exists for the project in the directory. */
export class NotEnrolledError extends MeshClientError {
  constructor(directory: string) {
    super(
      `No configuration in ${directory}; run enroll first`,
      "not_enrolled",
      ExitCode.other,
    );
  }
}

/** A caller passed an invalid argument, e.g. a project id that is not a uuid. */
export class InvalidArgumentError extends MeshClientError {
  readonly argument: string;

  constructor(argument: string, message: string) {
    super(`${argument}: ${message}`, "invalid_argument", ExitCode.usage);
    this.argument = argument;
  }
}

/** The command line is invalid. */
export class UsageError extends MeshClientError {
  constructor(message: string) {
    super(message, "usage", ExitCode.usage);
  }
}
