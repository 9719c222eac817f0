// The list of keel-build's commands. Each command lives in its own file of this folder.
import type { CommandClass, BaseContext } from 'clipanion';

export const buildCommands: CommandClass<BaseContext>[] = [];
