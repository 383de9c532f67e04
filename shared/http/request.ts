/** Reading and validating request bodies and query strings. */
import { z } from "zod";
import {
  type FieldIssue,
  InvalidInputError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
} from "../errors.ts";

/** Largest JSON body any endpoint accepts; a register request is under 2 KB. */
export const MAX_BODY_BYTES = 64 * 1024;

async function readLimited(
  request: Request,
  limit: number,
): Promise<Uint8Array> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw new PayloadTooLargeError(limit);
  if (!request.body) return new Uint8Array();

  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.length;
    if (size > limit) throw new PayloadTooLargeError(limit);
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

/** Reads a JSON object body: checks type, size, UTF-8 and syntax. */
export async function readJsonBody(
  request: Request,
  limit = MAX_BODY_BYTES,
): Promise<unknown> {
  const type = request.headers.get("content-type");
  if (!type || !/^application\/(json|[\w.+-]+\+json)\s*(;|$)/i.test(type)) {
    throw new UnsupportedMediaTypeError(type);
  }
  const bytes = await readLimited(request, limit);

  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new InvalidInputError(
      "The request body is not valid UTF-8",
      [],
      "invalid_json",
    );
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidInputError(
      "The request body is not valid JSON",
      [],
      "invalid_json",
    );
  }
}

function toFieldIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.map((issue) => ({
    field: issue.path.length > 0 ? issue.path.map(String).join(".") : "(body)",
    message: issue.message,
  }));
}

/** Validates `value` against `schema`, throwing a 400 that lists every failing field. */
export function parseInput<T extends z.ZodType>(
  schema: T,
  value: unknown,
  what = "request body",
): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issues = toFieldIssues(result.error);
    const fields = [...new Set(issues.map((issue) => issue.field))].join(", ");
    throw new InvalidInputError(`The ${what} is invalid: ${fields}`, issues);
  }
  return result.data;
}

/** Reads the query string into a plain object; repeated keys are rejected. */
export function queryObject(url: URL): Record<string, string> {
  const query: Record<string, string> = {};
  for (const [key, value] of url.searchParams) {
    if (key in query) {
      throw new InvalidInputError(`Query parameter ${key} is repeated`, [{
        field: key,
        message: "must appear once",
      }]);
    }
    query[key] = value;
  }
  return query;
}

/** A UUID in canonical form, case-insensitive. */
export const uuid = z.string().regex(
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i,
  "must be a UUID",
).transform((value) => value.toLowerCase());

// Control characters, plus invisible format characters (bidirectional
// overrides, zero-width spaces) and line separators that spoof how a name reads.
// deno-lint-ignore no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}]/u;

/** Free text shown to people: no control characters, trimmed, bounded. */
export function displayText(max: number) {
  return z.string()
    .trim()
    .min(1, "must not be empty")
    .max(max, `must be at most ${max} characters`)
    .refine(
      (value) => !CONTROL_CHARACTER.test(value),
      "must not contain control or invisible formatting characters",
    )
    // A lone surrogate cannot be stored as UTF-8; Postgres would replace it.
    .refine((value) => value.isWellFormed(), "must be well-formed Unicode");
}
