/**
 * Configuration directories that change atomically. The directory a caller
 * names (e.g. `~/.vidsync/nebula/<projectId>`) is a symbolic link to a hidden
 * sibling that contains one complete version of the files. A new version is
 * written and synced in full beside it, and one rename(2) of a new link over
 * the old one switches to it, so a reader (or a crash at any moment) sees
 * either the old or the new version, never a mix.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { ConfigFileError } from "./errors.ts";

/** One file of a configuration version. */
export interface ConfigFile {
  content: string | Uint8Array;
  /** Permission bits, e.g. 0o600 for the private key. */
  mode: number;
}

/** Hidden names that belong to `target`: versions and link candidates. */
function siblingPrefix(target: string): string {
  return `.${path.basename(target)}.`;
}

function randomSuffix(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));

  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(
    "",
  );
}

async function syncPath(file: string): Promise<void> {
  const handle = await fs.open(file, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeSynced(file: string, config: ConfigFile): Promise<void> {
  const handle = await fs.open(file, "wx", config.mode);
  try {
    await handle.writeFile(config.content);
    // The mode argument of open() is masked by the umask; set it exactly.
    await handle.chmod(config.mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Returns the version directory `target` links to, or null when there is no configuration. */
export async function currentVersion(target: string): Promise<string | null> {
  try {
    const link = await fs.readlink(target);
    return path.resolve(path.dirname(target), link);
  } catch (error) {
    if (isCode(error, "ENOENT")) return null;
    if (isCode(error, "EINVAL")) {
      throw new ConfigFileError(
        target,
        "is a regular directory, not a configuration written by vidsync-mesh; move it away or choose another directory",
        "unmanaged_directory",
      );
    }
    throw error;
  }
}

function isCode(error: unknown, code: string): boolean {
  return (error as { code?: string } | null)?.code === code;
}

/** Reads one file of the current version; null when there is no configuration. */
export async function readConfigFile(
  target: string,
  name: string,
): Promise<string | null> {
  const version = await currentVersion(target);
  if (!version) return null;

  return await fs.readFile(path.join(version, name), "utf8");
}

/** Removes versions and link candidates left by an interrupted write. */
async function removeStale(target: string, keep: string | null) {
  const parent = path.dirname(target);
  const prefix = siblingPrefix(target);
  for (const entry of await fs.readdir(parent)) {
    const full = path.join(parent, entry);
    if (!entry.startsWith(prefix) || full === keep) continue;
    await fs.rm(full, { recursive: true, force: true });
  }
}

/** Removes `target` when it is an empty real directory (made by hand or by an installer), so the link can take its place. */
async function clearEmptyDirectory(target: string): Promise<void> {
  const stat = await fs.lstat(target).catch(() => null);
  if (!stat || !stat.isDirectory()) return;

  if ((await fs.readdir(target)).length > 0) {
    throw new ConfigFileError(
      target,
      "is a non-empty regular directory, not a configuration written by vidsync-mesh; move it away or choose another directory",
      "unmanaged_directory",
    );
  }
  await fs.rmdir(target);
}

/**
 * Writes a complete configuration version and switches `target` to it.
 * NOTE: two processes writing the same target at once may remove each
 * other's unfinished version; the last switch wins and stays complete.
 */
export async function writeConfiguration(
  target: string,
  files: Record<string, ConfigFile>,
): Promise<string> {
  const parent = path.dirname(target);
  await fs.mkdir(parent, { recursive: true, mode: 0o700 });
  await clearEmptyDirectory(target);
  const previous = await currentVersion(target);
  await removeStale(target, previous);

  const prefix = siblingPrefix(target);
  const version = path.join(
    parent,
    `${prefix}v-${Date.now()}-${randomSuffix()}`,
  );
  await fs.mkdir(version, { mode: 0o700 });
  for (const [name, file] of Object.entries(files)) {
    await writeSynced(path.join(version, name), file);
  }
  await syncPath(version);

  const link = path.join(parent, `${prefix}link-${randomSuffix()}`);
  await fs.symlink(path.basename(version), link);
  await fs.rename(link, target);
  await syncPath(parent);

  if (previous) await fs.rm(previous, { recursive: true, force: true });
  return version;
}

/** Removes the configuration: first the link (atomic), then its files. Returns false when there was none. */
export async function removeConfiguration(target: string): Promise<boolean> {
  const version = await currentVersion(target);
  if (!version) return false;

  await fs.unlink(target);
  await syncPath(path.dirname(target));
  await removeStale(target, null);

  return true;
}
