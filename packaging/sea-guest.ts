// Entry of the negotiator-guest single executable (packaging/sea.ts bundles it): the built-in commands come
// from the embedded assets, then the CLI runs as the npm-installed one does.
import { locateBuiltinCommandsWith } from '../common/commands/builtin.js';
import { extractBuiltinCommands } from './sea-builtins.js';

locateBuiltinCommandsWith(extractBuiltinCommands);
void import('../guest/cli.js');
