/**
 * Helpers for the function tests on top of the in-process harness. They build
 * handler dependencies with a chosen authenticator and sign access tokens with
 * HS256 or with an ES256 key served from a JWKS on 127.0.0.1. They also check
 * CORS headers and run the `nebula-cert` and `nebula` oracles.
 */
import assert from "node:assert/strict";
import {
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from "jose";
import { createAuthenticator } from "../../shared/auth/mod.ts";
import type { Db } from "../../shared/db/port.ts";
import { LOCAL_JWT_SECRET } from "../../shared/env.ts";
import type { HandlerDeps } from "../../shared/handlers/deps.ts";
import { createFunction } from "../../shared/handlers/mod.ts";
import { CORS_HEADERS } from "../../shared/http/cors.ts";
import { silentLogger } from "../../shared/http/log.ts";
import type { FetchHandler } from "../../shared/http/serve.ts";
import { ISSUER, randomKek } from "./harness.ts";

export * from "./harness.ts";

export interface DepsOptions {
  jwtSecret?: string;
  issuer?: string;
  jwksUrl?: string;
  kek?: Uint8Array;
  now?: () => Date;
}

/** Builds handler dependencies the way the Edge Functions do, with a silent logger. */
export function functionDeps(db: Db, options: DepsOptions = {}): HandlerDeps {
  return {
    db,
    auth: createAuthenticator(db, {
      jwtSecret: options.jwtSecret ?? LOCAL_JWT_SECRET,
      issuer: options.issuer ?? ISSUER,
      jwksUrl: options.jwksUrl,
    }),
    kek: options.kek ?? randomKek(),
    logger: silentLogger,
    now: options.now ?? (() => new Date()),
  };
}

/** Returns a handler factory that builds each function once for `deps`. */
export function functionsFor(
  deps: HandlerDeps,
): (name: string) => FetchHandler {
  const built = new Map<string, FetchHandler>();
  return (name) => {
    if (!built.has(name)) built.set(name, createFunction(name, deps));
    return built.get(name)!;
  };
}

export interface EcSigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function ecSigningKey(): Promise<EcSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", {
    extractable: true,
  });
  const kid = crypto.randomUUID();
  const publicJwk = {
    ...await exportJWK(publicKey),
    kid,
    alg: "ES256",
    use: "sig",
  };
  return { kid, privateKey, publicJwk };
}

export interface JwksServer extends AsyncDisposable {
  url: string;
  /** How many times the JWKS was fetched. */
  hits(): number;
}

/** Serves `{keys}` on a free loopback port at Supabase Auth's JWKS path. */
export function serveJwks(keys: JWK[]): JwksServer {
  let hits = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => {
      hits++;
      return Response.json({ keys });
    },
  );
  const { port } = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${port}/auth/v1/.well-known/jwks.json`,
    hits: () => hits,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Returns the claims Supabase Auth puts in a signed-in user's access token. */
export function userClaims(
  userId: string,
  overrides: JWTPayload = {},
): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: userId,
    aud: "authenticated",
    iss: ISSUER,
    role: "authenticated",
    email: `${userId.slice(0, 8)}@example.test`,
    iat: now - 10,
    exp: now + 3600,
    ...overrides,
  };
}

/** Signs exactly `claims`: HS256 with the secret, or ES256 with `key`. */
export async function signClaims(
  claims: JWTPayload,
  signer: { secret?: string } | { key: EcSigningKey },
): Promise<string> {
  const jwt = new SignJWT(claims);
  if ("key" in signer) {
    return await jwt
      .setProtectedHeader({ alg: "ES256", kid: signer.key.kid, typ: "JWT" })
      .sign(signer.key.privateKey);
  }
  return await jwt
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .sign(new TextEncoder().encode(signer.secret ?? LOCAL_JWT_SECRET));
}

/** Encodes a JWT part as base64url without padding. */
export function base64url(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("=", "").replaceAll("+", "-").replaceAll("/", "_");
}

/** Checks that a response carries every CORS header the browser needs. */
export function assertCors(response: Response, label = ""): void {
  for (const [name, value] of Object.entries(CORS_HEADERS)) {
    assert.equal(response.headers.get(name), value, `${label} ${name}`);
  }
}

export async function runTool(command: string, args: string[], cwd?: string) {
  const output = await new Deno.Command(command, {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    success: output.success,
    text: new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr),
  };
}

/** Makes `node.key` and `node.pub` in `dir` with `nebula-cert keygen`, as a device would. */
export async function nebulaKeygen(dir: string): Promise<string> {
  const result = await runTool("nebula-cert", [
    "keygen",
    "-out-key",
    `${dir}/node.key`,
    "-out-pub",
    `${dir}/node.pub`,
  ]);
  assert.ok(result.success, result.text);
  return await Deno.readTextFile(`${dir}/node.pub`);
}

/** Reads a certificate with `nebula-cert print -json`. */
export async function printCertificate(path: string) {
  const printed = await runTool("nebula-cert", [
    "print",
    "-json",
    "-path",
    path,
  ]);
  assert.ok(printed.success, printed.text);
  return JSON.parse(printed.text.split("\n")[0]) as {
    fingerprint: string;
    details: {
      name: string;
      ips: string[];
      issuer: string;
      publicKey: string;
      notAfter: string;
    };
  };
}
