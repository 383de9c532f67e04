/**
 * Calls the VidSync Mesh Edge Functions through supabase-js: sign-in with
 * `auth.signInWithPassword` and every request with `functions.invoke`.
 */
import {
  createClient,
  FunctionsFetchError,
  FunctionsHttpError,
  FunctionsRelayError,
  type SupabaseClient,
} from "@supabase/supabase-js";
import {
  apiErrorFromProblem,
  AuthError,
  MeshApiError,
  NetworkError,
  type ProblemDocument,
} from "./errors.ts";

/** How to reach the API and who the caller is. */
export interface ApiOptions {
  /** Supabase project URL, e.g. `https://<ref>.supabase.co` or `http://127.0.0.1:54321`. */
  url: string;
  /** The project's anon (publishable) key; the local stack accepts any value. */
  anonKey?: string;
  /** A Supabase access token; `signIn` sets one from email and password. */
  accessToken?: string;
  /** fetch to send requests with; defaults to the global one. */
  fetch?: typeof fetch;
  /** Time limit of each request in milliseconds. */
  timeoutMs?: number;
}

/** A successful response: parsed body, status and headers. */
export interface ApiResponse<T> {
  data: T;
  status: number;
  headers: Headers;
}

/** Sentinel body of a 304 Not Modified response. */
export const NOT_MODIFIED = Symbol("not modified");

const ZIP_TYPE = "application/zip";
const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * functions.invoke reads any content type it does not know as text, which
 * corrupts a zip. This fetch relabels zip responses as application/octet-stream
 * so invoke returns them as a Blob with the bytes untouched.
 */
function zipSafeFetch(inner: typeof fetch): typeof fetch {
  return async (input, init) => {
    const response = await inner(input, init);
    const type = response.headers.get("content-type") ?? "";
    if (!type.toLowerCase().startsWith(ZIP_TYPE)) return response;

    const headers = new Headers(response.headers);
    headers.set("content-type", "application/octet-stream");
    headers.set("x-original-content-type", type);
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  };
}

/**
 * Stands in for WebSocket in runtimes without one (Node 20): supabase-js
 * builds its Realtime client eagerly and throws there without a transport,
 * but this client never opens a Realtime channel.
 */
class RealtimeNotUsed {
  constructor() {
    throw new Error("The mesh client does not use Supabase Realtime");
  }
}

async function readProblem(response: Response): Promise<ProblemDocument> {
  const text = await response.text().catch(() => "");
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object") return parsed;
  } catch {
    // Not JSON, so a proxy or gateway responded. Its first line becomes the detail.
  }
  const firstLine = text.split("\n")[0].trim().slice(0, 200);

  return {
    status: response.status,
    title: response.statusText,
    detail: firstLine || `HTTP ${response.status} ${response.statusText}`,
  };
}

/** Transport over supabase-js with errors mapped to the client's classes. */
export class MeshApi {
  readonly url: string;
  readonly supabase: SupabaseClient;
  #accessToken?: string;
  #timeoutMs: number;

  constructor(options: ApiOptions) {
    this.url = options.url.replace(/\/+$/, "");
    this.#accessToken = options.accessToken;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.supabase = createClient(
      this.url,
      options.anonKey || "local-anon-key",
      {
        auth: {
          persistSession: false,
          autoRefreshToken: false,
          detectSessionInUrl: false,
        },
        global: { fetch: zipSafeFetch(options.fetch ?? globalThis.fetch) },
        realtime: {
          transport: (globalThis.WebSocket ??
            RealtimeNotUsed) as unknown as typeof WebSocket,
        },
      },
    );
  }

  get hasAccessToken(): boolean {
    return Boolean(this.#accessToken);
  }

  /** Signs in with email and password and keeps the session's access token. */
  async signIn(email: string, password: string): Promise<void> {
    const { data, error } = await this.supabase.auth.signInWithPassword({
      email,
      password,
    });
    if (error) {
      const status = (error as { status?: number }).status;
      if (!status || error.name === "AuthRetryableFetchError") {
        throw new NetworkError(`${this.url}/auth/v1`, error);
      }
      throw new AuthError(`Sign-in as ${email} failed: ${error.message}`);
    }
    if (!data.session) {
      throw new AuthError(`Sign-in as ${email} returned no session`);
    }

    this.#accessToken = data.session.access_token;
  }

  /** Calls a function; `name` may carry a path and a query string. */
  async invoke<T>(
    name: string,
    options: {
      method?: "GET" | "POST";
      body?: unknown;
      headers?: Record<string, string>;
      auth?: boolean;
    } = {},
  ): Promise<ApiResponse<T | typeof NOT_MODIFIED>> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.auth !== false) {
      if (!this.#accessToken) {
        throw new AuthError(
          "No access token: set VIDSYNC_ACCESS_TOKEN or sign in with email and password",
          "missing_token",
        );
      }
      headers.Authorization = `Bearer ${this.#accessToken}`;
    }

    const { data, error, response } = await this.supabase.functions.invoke(
      name,
      {
        method: options.method ?? "POST",
        body: options.body as Record<string, unknown> | undefined,
        headers,
        timeout: this.#timeoutMs,
      },
    );
    if (error) return await this.#raise(name, error);

    return {
      data: data as T,
      status: response!.status,
      headers: response!.headers,
    };
  }

  async #raise(
    name: string,
    error: unknown,
  ): Promise<ApiResponse<typeof NOT_MODIFIED>> {
    if (
      error instanceof FunctionsHttpError ||
      error instanceof FunctionsRelayError
    ) {
      const response = error.context as Response;
      if (response.status === 304) {
        return { data: NOT_MODIFIED, status: 304, headers: response.headers };
      }
      throw apiErrorFromProblem(response.status, await readProblem(response));
    }
    if (error instanceof FunctionsFetchError) {
      throw new NetworkError(
        `${this.url}/functions/v1/${name.split("?")[0]}`,
        error.context,
      );
    }
    throw new MeshApiError(0, { detail: String(error) });
  }
}
