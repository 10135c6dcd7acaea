import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Builds the browser console: esbuild bundles console/src/main.ts (with jose's browser build and
 * the suite's k8s/istio rules as text) into one script; the page and the stylesheet are copied.
 * `npm run build` writes the result to dist/console/; a factory started from the sources builds it
 * in memory on first use, so nothing built is ever committed.
 */

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository root: console/ sits in it, and dist/console/build.js two levels below it. */
const ROOT = path.basename(path.dirname(HERE)) === 'dist' ? path.resolve(HERE, '..', '..') : path.resolve(HERE, '..');

/** One file of the console, ready to serve. */
export interface ConsoleAsset {
  body: Buffer;
  type: string;
  etag: string;
}

const asset = (body: Buffer, type: string): ConsoleAsset => ({ body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });

/** Bundles the console from its sources; resolves with its files by name. */
export async function buildConsole(): Promise<Map<string, ConsoleAsset>> {
  // esbuild is a development dependency: only a source checkout builds.
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: [path.join(ROOT, 'console', 'src', 'main.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    loader: { '.yaml': 'text' },
    logLevel: 'silent',
  });
  const files = new Map<string, ConsoleAsset>();
  files.set('app.js', asset(Buffer.from(result.outputFiles[0]!.contents), 'text/javascript; charset=utf-8'));
  files.set('index.html', asset(await readFile(path.join(ROOT, 'console', 'index.html')), 'text/html; charset=utf-8'));
  files.set('style.css', asset(await readFile(path.join(ROOT, 'console', 'style.css')), 'text/css; charset=utf-8'));
  return files;
}

/** The file names the console serves, for a prebuilt folder. */
export const CONSOLE_FILES: Readonly<Record<string, string>> = { 'app.js': 'text/javascript; charset=utf-8', 'index.html': 'text/html; charset=utf-8', 'style.css': 'text/css; charset=utf-8' };

/** Reads a prebuilt console folder (dist/console); undefined when it holds no bundle. */
export async function readBuiltConsole(dir: string): Promise<Map<string, ConsoleAsset> | undefined> {
  const files = new Map<string, ConsoleAsset>();
  for (const [name, type] of Object.entries(CONSOLE_FILES)) {
    const body = await readFile(path.join(dir, name)).catch(() => undefined);
    if (!body) return undefined;
    files.set(name, asset(body, type));
  }
  return files;
}

// `tsx console/build.ts <outDir>` (npm run build): write the bundle where the compiled factory serves it.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = path.resolve(process.argv[2] ?? path.join('dist', 'console'));
  const files = await buildConsole();
  await mkdir(out, { recursive: true });
  for (const [name, file] of files) await writeFile(path.join(out, name), file.body);
  process.stdout.write(`console: ${[...files].map(([n, f]) => `${n} ${f.body.length} B`).join(', ')} in ${path.relative(process.cwd(), out) || '.'}\n`);
}
