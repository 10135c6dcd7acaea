import { open, rename, link, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

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
 * Writes `data` to `file` atomically with mode 0600: a temp file in the same directory,
 * fsync, then rename (replace) or link (create only; fails with EEXIST when the file exists,
 * so two processes creating the same key cannot both win), then fsync the directory.
 */
export async function writeFileAtomic(file: string, data: string, mode: 'replace' | 'create'): Promise<void> {
  const dir = path.dirname(file);
  // A leading dot keeps the loader from ever reading a half-written temp file.
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (mode === 'replace') {
      await rename(temp, file);
    } else {
      await link(temp, file);
      await unlink(temp);
    }
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}
