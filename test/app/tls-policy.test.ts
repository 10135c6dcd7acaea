import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/process.js';

/** Every file of the project a person wrote: sources, manifests, settings, docs (not dependencies or outputs). */
function projectFiles(dir = ROOT): string[] {
  const skip = new Set(['node_modules', '.git', 'dist', 'bench-results', 'certs', 'keys', 'fixtures']);
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return skip.has(entry.name) ? [] : projectFiles(full);
    return /\.(ts|js|mjs|json|ya?ml|md|env)$|^Dockerfile$|^run$/.test(entry.name) ? [full] : [];
  });
}

describe('TLS verification is never switched off', () => {
  // Spelled in pieces so this file does not match itself.
  const forbidden = ['rejectUnauthorized' + ': false', 'NODE_TLS_REJECT' + '_UNAUTHORIZED', 'curl ' + '-k ', '--' + 'insecure'];

  it('no project file turns certificate checks off', () => {
    const files = projectFiles();
    expect(files.length).toBeGreaterThan(50);
    const hits = files.flatMap((file) => {
      const text = readFileSync(file, 'utf8');
      return forbidden.filter((needle) => text.includes(needle)).map((needle) => `${path.relative(ROOT, file)}: ${needle}`);
    });
    expect(hits).toEqual([]);
  });
});
