/** One JSON object per line on stdout, which Supabase's function logs index. */

export type LogFields = Record<string, unknown>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

function write(level: string, message: string, fields: LogFields = {}) {
  console.log(
    JSON.stringify({
      time: new Date().toISOString(),
      level,
      msg: message,
      ...fields,
    }),
  );
}

export const jsonLogger: Logger = {
  info: (message, fields) => write("info", message, fields),
  error: (message, fields) => write("error", message, fields),
};

/** Discards everything; for tests that call handlers in-process. */
export const silentLogger: Logger = { info() {}, error() {} };

/** Describes an unexpected error for the log: class, message, SQLSTATE, cause and stack, never request data. */
export function describeError(error: unknown): LogFields {
  if (!(error instanceof Error)) return { error: String(error) };
  const code = (error as { code?: unknown }).code;
  const cause = error.cause instanceof Error ? error.cause : undefined;
  return {
    error: error.name,
    errorMessage: error.message,
    ...(typeof code === "string" ? { errorCode: code } : {}),
    ...(cause ? { cause: `${cause.name}: ${cause.message}` } : {}),
    stack: error.stack?.split("\n").slice(0, 8).join("\n"),
  };
}
