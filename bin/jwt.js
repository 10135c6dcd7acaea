#!/usr/bin/env node
// The `jwt` command for `npx jwt`: runs cli/main.ts through tsx (a development dependency, as for
// every npm script of the suite).
import { register } from 'tsx/esm/api';

register();
await import(new URL('../cli/main.ts', import.meta.url).href);
