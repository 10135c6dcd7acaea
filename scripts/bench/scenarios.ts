import type { RowName } from './args.js';
import type { LoadSettings } from './load.js';
import type { RowResult } from './report.js';

/** Scenario rows: measured once the services and the demo's start-up code are in the checkout. */
export async function runScenarioRows(
  rows: RowName[],
  _settings: LoadSettings,
  _tmpDir: string,
  progress: (line: string) => void,
): Promise<Omit<RowResult, 'label'>[]> {
  progress('scenario rows: the suite start-up (scripts/demo.ts) is not in this checkout yet');
  return rows.map((row) => ({ row, kind: 'scenario' as const, skipped: 'services not available yet' }));
}
