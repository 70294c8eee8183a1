#!/usr/bin/env node
// `npm run demo` (after the build): see run-demo.ts. Exit status 0 when every step worked, 1 when one
// failed, 130 on Ctrl-C (143 on SIGTERM); the daemons are stopped and the temp directory removed in all cases.
import { runDemo } from './run-demo.js';

process.exitCode = await runDemo();
