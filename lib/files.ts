import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';

export interface AtomicWriteOptions {
  /** The file's mode, set exactly (the umask does not apply). Default 0600: private unless said otherwise. */
  mode?: number;
  /** Fail with EEXIST instead of replacing an existing file (two processes creating one file cannot both win). */
  noClobber?: boolean;
  /** Mode of the folder when it has to be created. Default 0700. */
  dirMode?: number;
}

/** fsyncs a directory so that a rename or link inside it survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes `data` to `file` atomically: a temp file in the same folder (created with the final
 * mode, so a private key is never readable by others, not even for an instant), fsync, then
 * rename, or with `noClobber` a hard link that fails with EEXIST; then the folder is fsynced.
 * A crash leaves either the old file or the new one, never half of one.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: options.dirMode ?? 0o700 });
  // A leading dot keeps loaders that list the folder from ever reading a half-written temp file.
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', mode);
  try {
    try {
      await handle.writeFile(data);
      // open() applies the umask to `mode`; set it exactly so a 0644 public file stays readable.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.noClobber) await link(temp, file);
    else await rename(temp, file);
  } finally {
    // After a rename the temp name is gone; after a link or any failure it must go.
    await rm(temp, { force: true });
  }
  await syncDir(dir);
}

const missing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** A file's text, or undefined when it does not exist (any other failure throws). */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (missing(err)) return undefined;
    throw err;
  }
}

/** readIfExists for start-up, before a server listens (no request waits on it). */
export function readIfExistsSync(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (missing(err)) return undefined;
    throw err;
  }
}
