/** Dependencies every handler receives. Tests and the local server build them in-process. */
import type { Authenticator } from "../auth/mod.ts";
import type { Db } from "../db/port.ts";
import type { Logger } from "../http/log.ts";

export interface HandlerDeps {
  db: Db;
  auth: Authenticator;
  /** 32-byte key-encryption key that seals CA private keys. */
  kek: Uint8Array;
  logger: Logger;
  now: () => Date;
  /** Secret that `nebula-reclaim` callers must present; unset rejects every call. */
  reclaimSecret?: string;
}
