/**
 * Verifies Supabase access tokens. HS256 tokens are checked with the
 * project's JWT secret; ES256 and RS256 tokens (Supabase's asymmetric signing
 * keys) with the project's JWKS. The user must still exist in auth.users, so
 * a deleted user's unexpired token is refused.
 *
 * Functions verify tokens themselves and run with `verify_jwt = false`: the
 * platform's check would reject requests before the function runs, without CORS
 * headers or a problem document, and `nebula-ca` needs no token at all.
 */
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  type JWTPayload,
  jwtVerify,
} from "jose";
import type { Db } from "../db/port.ts";
import { UnauthorizedError } from "../errors.ts";

export interface AuthSettings {
  jwtSecret: string;
  /** URL of the project's JWKS; asymmetric tokens are refused without it. */
  jwksUrl?: string;
  /** Expected `iss`; not checked when unset. */
  issuer?: string;
}

export interface AuthUser {
  userId: string;
  email?: string;
}

export interface Authenticator {
  /** Verifies the access token and checks that its user exists. */
  authenticate(request: Request): Promise<AuthUser>;
  /** Verifies the access token only; call `requireUser` before acting for the user. */
  verifyToken(request: Request): Promise<AuthUser>;
  /** Checks that the user of a verified token still exists. */
  requireUser(user: AuthUser): Promise<void>;
}

const ASYMMETRIC = new Set(["ES256", "RS256"]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Tells whether a jose error code means the JWKS was unreachable or unusable. A network error from fetch has no code. */
function isKeySourceFailure(code: string | undefined): boolean {
  return code === undefined || code === "ERR_JWKS_TIMEOUT" ||
    code === "ERR_JWKS_INVALID";
}

function bearerToken(request: Request): string {
  const header = request.headers.get("authorization");
  if (!header) {
    throw new UnauthorizedError(
      "Missing Authorization header; send `Authorization: Bearer <access token>`",
      "missing_token",
    );
  }
  const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/
    .exec(header.trim());
  if (!match) {
    throw new UnauthorizedError(
      "The Authorization header must be `Bearer <access token>`",
    );
  }
  return match[1];
}

export function createAuthenticator(
  db: Db,
  settings: AuthSettings,
): Authenticator {
  // The secret is imported once, so each HS256 verification skips jose's
  // importKey. When the import fails, as for an empty secret, verify() rejects
  // every HS256 token as not valid.
  const secret = crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(settings.jwtSecret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  // verify() handles the rejection. This handler only keeps an unused failed
  // import from being reported as unhandled.
  secret.catch(() => {});
  const jwks = settings.jwksUrl
    ? createRemoteJWKSet(new URL(settings.jwksUrl))
    : undefined;

  async function verify(token: string): Promise<JWTPayload> {
    let algorithm: string | undefined;
    try {
      algorithm = decodeProtectedHeader(token).alg;
    } catch {
      throw new UnauthorizedError("The access token is malformed");
    }
    // Without a required `exp`, jose would accept a token that never expires.
    const options = {
      audience: "authenticated",
      issuer: settings.issuer,
      requiredClaims: ["exp", "sub"],
    };
    try {
      if (algorithm === "HS256") {
        return (await jwtVerify(token, await secret, {
          ...options,
          algorithms: ["HS256"],
        })).payload;
      }
      if (algorithm && ASYMMETRIC.has(algorithm) && jwks) {
        return (await jwtVerify(token, jwks, {
          ...options,
          algorithms: [...ASYMMETRIC],
        })).payload;
      }
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (algorithm !== "HS256" && isKeySourceFailure(code)) {
        // The token may be fine: the JWKS could not be read, so this is a
        // server fault (500, logged with its cause), not the caller's.
        throw new Error(`Fetching the JWKS from ${settings.jwksUrl} failed`, {
          cause: error,
        });
      }
      if (code === "ERR_JWT_EXPIRED") {
        throw new UnauthorizedError(
          "The access token has expired; sign in again",
        );
      }
      throw new UnauthorizedError(
        "The access token is not valid for this project",
      );
    }
    throw new UnauthorizedError(
      `Tokens signed with ${algorithm ?? "no algorithm"} are not accepted`,
    );
  }

  async function verifyToken(request: Request): Promise<AuthUser> {
    const payload = await verify(bearerToken(request));
    if (
      payload.role !== "authenticated" || typeof payload.sub !== "string" ||
      !UUID.test(payload.sub)
    ) {
      throw new UnauthorizedError(
        "The access token is not a signed-in user's token",
      );
    }
    return {
      // Lowercase, as PostgreSQL prints a uuid, so rate-limit keys match.
      userId: payload.sub.toLowerCase(),
      email: typeof payload.email === "string" ? payload.email : undefined,
    };
  }

  async function requireUser(user: AuthUser): Promise<void> {
    const rows = await db.query<{ id: string }>(
      "select id from auth.users where id = $1",
      [user.userId],
    );
    if (rows.length === 0) {
      throw new UnauthorizedError("The access token's user does not exist");
    }
  }

  return {
    verifyToken,
    requireUser,
    async authenticate(request: Request): Promise<AuthUser> {
      const user = await verifyToken(request);
      await requireUser(user);
      return user;
    },
  };
}
