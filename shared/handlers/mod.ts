/** Builds each Edge Function's fetch handler from its routes and dependencies. */
import { createAuthenticator } from "../auth/mod.ts";
import { connectPostgres } from "../db/postgres.ts";
import { readSettings } from "../env.ts";
import { jsonLogger } from "../http/log.ts";
import {
  createFunctionHandler,
  type FetchHandler,
  type Route,
} from "../http/serve.ts";
import type { HandlerDeps } from "./deps.ts";
import { caRoutes, releaseRoutes, statusRoutes } from "./device.ts";
import {
  configRoutes,
  heartbeatRoutes,
  reclaimRoutes,
  renewRoutes,
  revokeRoutes,
} from "./lifecycle.ts";
import { projectRoutes } from "./project.ts";
import { registerRoutes } from "./register.ts";

export const FUNCTION_ROUTES: Record<string, (deps: HandlerDeps) => Route[]> = {
  "nebula-project": projectRoutes,
  "nebula-register": registerRoutes,
  "nebula-ca": caRoutes,
  "nebula-status": statusRoutes,
  "nebula-release": releaseRoutes,
  "nebula-renew": renewRoutes,
  "nebula-config": configRoutes,
  "nebula-heartbeat": heartbeatRoutes,
  "nebula-revoke": revokeRoutes,
  "nebula-reclaim": reclaimRoutes,
};

export type FunctionName = keyof typeof FUNCTION_ROUTES;

export function createFunction(name: string, deps: HandlerDeps): FetchHandler {
  const routes = FUNCTION_ROUTES[name];
  if (!routes) throw new Error(`Unknown function ${name}`);
  return createFunctionHandler(name, routes(deps), deps.logger);
}

/**
 * The production entry point: settings from the environment, one postgres.js
 * pool per function instance, created on the first request.
 */
export function createFunctionFromEnv(name: string): FetchHandler {
  let handler: FetchHandler | undefined;
  return (request) => {
    if (!handler) {
      const settings = readSettings();
      const db = connectPostgres(settings.databaseUrl, {
        max: settings.poolSize,
      });
      handler = createFunction(name, {
        db,
        auth: createAuthenticator(db, settings),
        kek: settings.kek,
        logger: jsonLogger,
        now: () => new Date(),
        reclaimSecret: settings.reclaimSecret,
      });
    }
    return handler(request);
  };
}
