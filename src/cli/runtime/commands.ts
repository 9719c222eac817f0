// The list of keel's commands. Each command lives in its own file of this folder.
import type { CommandClass, BaseContext } from 'clipanion';
import { VersionCommand } from './version.js';
import { SpecCommand } from './spec.js';
import { lifecycleCommands } from './lifecycle.js';

export const runtimeCommands: CommandClass<BaseContext>[] = [VersionCommand, SpecCommand, ...lifecycleCommands];
