import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { expect } from 'vitest';
import { ROOT } from '../helpers/process.js';

/**
 * A panel's screenshot: into docs/console/ (committed, shown in the README) with
 * SCREENSHOTS=update, else into a temporary folder, so a test run leaves the tree unchanged.
 */
export async function screenshot(page: Page, name: string, fullPage = false): Promise<void> {
  const dir = process.env.SCREENSHOTS === 'update' ? path.join(ROOT, 'docs', 'console') : path.join(tmpdir(), 'jwt-console-screenshots');
  const png = await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage });
  expect(png.subarray(1, 4).toString()).toBe('PNG');
}
