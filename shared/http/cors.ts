/**
 * CORS for browsers and the desktop app. Every response carries these
 * headers, errors included, or a browser hides the problem document.
 */
export const CORS_HEADERS: Record<string, string> = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, PATCH, DELETE, OPTIONS",
  "access-control-allow-headers":
    "authorization, x-client-info, apikey, content-type, accept, if-none-match, x-request-id",
  "access-control-expose-headers":
    "etag, retry-after, ratelimit-limit, ratelimit-remaining, x-request-id, x-nebula-ip, x-nebula-fingerprint",
  "access-control-max-age": "86400",
};

export function withCors(response: Response): Response {
  for (const [name, value] of Object.entries(CORS_HEADERS)) {
    response.headers.set(name, value);
  }
  return response;
}
