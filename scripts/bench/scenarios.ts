import path from 'node:path';
import { ensureCertificates } from '../../lib/certs.js';
import { freePort } from '../../lib/ports.js';
import { launch, treeCpuMs, type Launched } from './launch.js';
import { runLoad, type LoadSettings } from './load.js';
import type { RowResult } from './report.js';

const HOST = '127.0.0.1';

/** What each scenario row calls on servicea, and what servicea does for it. */
const SCENARIOS = [
  // Scenario 1: A gets a token from the factory (or its cache), presents it to B (plain HTTP), B asks the factory to verify it.
  { id: 'scenario1', path: '/scenario1', label: 'scenario 1 end-to-end (A -> factory, A -> B -> factory)' },
  // Scenario 3: A signs its own token (or reuses it), presents it to B over HTTPS with the suite's CA; B verifies locally.
  { id: 'scenario3', path: '/scenario3', label: 'scenario 3 end-to-end (A -> B over TLS)' },
] as const;

/**
 * Starts servicea and serviceb (the receivers scenarios 1 and 3 need) against the running
 * factory, with certificates and servicea's own key pair in the bench's temporary folder, on
 * free ports. The environment is explicit: the services' committed .env files name the
 * documented ports, which a benchmark must never take.
 */
async function startServices(factoryUrl: string, tmpDir: string): Promise<{ servicea: Launched; serviceb: Launched }> {
  const certsDir = path.join(tmpDir, 'certs');
  await ensureCertificates(certsDir, { services: ['servicea', 'serviceb'] });
  const [a, b, bHttps] = [await freePort(), await freePort(), await freePort()];
  const common = {
    HOST,
    LOG_LEVEL: 'info',
    CERTS_DIR: certsDir,
    FACTORY_URL: factoryUrl,
    SERVICEA_URL: `http://${HOST}:${a}`,
    SERVICEB_URL: `http://${HOST}:${b}`,
    SERVICEB_HTTPS_URL: `https://${HOST}:${bHttps}`,
    SERVICE_KEYS_DIR: path.join(tmpDir, 'servicea-self'),
    PEER_KEYS_DIR: path.join(tmpDir, 'servicea-self'),
  };
  const [servicea, serviceb] = await Promise.all([
    launch('app/main.ts', { args: ['servicea'], env: { ...common, PORT: String(a), HTTPS_PORT: '' }, logFile: path.join(tmpDir, 'servicea.log') }),
    launch('app/main.ts', { args: ['serviceb'], env: { ...common, PORT: String(b), HTTPS_PORT: String(bHttps) }, logFile: path.join(tmpDir, 'serviceb.log') }),
  ]);
  return { servicea, serviceb };
}

/** One call must come back with B's verdict `valid`, or the row would measure failures. */
async function checkScenario(url: string): Promise<void> {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  const body = (await res.json()) as { serviceb?: { valid?: boolean; error?: { name?: string } }; error?: { code?: string } };
  if (res.status !== 200 || body.serviceb?.valid !== true) {
    throw new Error(`answered ${res.status} ${body.error?.code ?? body.serviceb?.error?.name ?? JSON.stringify(body).slice(0, 200)}`);
  }
}

/**
 * Scenario rows: end-to-end calls per second on servicea's `/scenarioN` under the same load
 * settings as the factory rows; each call crosses servicea, the factory (scenario 1) and
 * serviceb. A row that cannot run is reported as skipped with the reason.
 */
export async function runScenarioRows(
  settings: LoadSettings,
  context: { factoryUrl: string; factoryPid: number; tmpDir: string },
  progress: (line: string) => void,
): Promise<RowResult[]> {
  const row = (s: (typeof SCENARIOS)[number]) => ({ id: s.id, label: s.label, group: 'scenarios' as const, op: 'scenario' as const });
  progress('starting servicea and serviceb for the scenario rows');
  let services: { servicea: Launched; serviceb: Launched };
  try {
    services = await startServices(context.factoryUrl, context.tmpDir);
  } catch (err) {
    const reason = `the services did not start: ${(err as Error).message.split('\n')[0]}`;
    return SCENARIOS.map((s) => ({ ...row(s), skipped: reason }));
  }
  const a = `http://${HOST}:${services.servicea.port}`;
  const results: RowResult[] = [];
  // One end-to-end call costs CPU in all three processes: the meter sums them.
  const cpu = () => [context.factoryPid, services.servicea.pid, services.serviceb.pid].reduce((sum, pid) => sum + treeCpuMs(pid), 0);
  try {
    const gen = await fetch(`${a}/gen-keys`, { method: 'POST' });
    if (!gen.ok) throw new Error(`POST /gen-keys on servicea answered ${gen.status}`);
    for (const scenario of SCENARIOS) {
      try {
        await checkScenario(`${a}${scenario.path}`);
      } catch (err) {
        results.push({ ...row(scenario), skipped: `GET ${scenario.path} ${(err as Error).message}` });
        continue;
      }
      progress(`loading servicea: GET ${scenario.path}`);
      results.push({ ...row(scenario), load: await runLoad({ url: `${a}${scenario.path}` }, settings, cpu) });
    }
  } finally {
    await Promise.all([services.servicea.stop(), services.serviceb.stop()]);
  }
  return results;
}
