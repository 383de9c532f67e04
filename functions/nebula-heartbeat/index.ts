import { createFunctionFromEnv } from "../../shared/handlers/mod.ts";

Deno.serve(createFunctionFromEnv("nebula-heartbeat"));
