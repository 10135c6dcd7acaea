import { main } from '../../cli/jwt.js';

/** Runs a `jwt` command line in this process; `onErr` sees everything written to stderr so far, as it grows. */
export async function runJwt(args: string[], onErr: (stderr: string) => void = () => undefined): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (t) => void (stdout += t), err: (t) => ((stderr += t), onErr(stderr)), now: () => new Date(), stdin: async () => '' });
  return { code, stdout, stderr };
}
