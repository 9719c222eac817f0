// The list of keel-build's commands. Each command lives in its own file of this folder.
import type { CommandClass, BaseContext } from 'clipanion';
import { UnpackCommand } from './unpack.js';
import { ImagesCommand } from './images.js';
import { InspectCommand } from './inspect.js';
import { ParseCommand } from './parse.js';
import { BuildCommand } from './build.js';
import { PruneCommand } from './prune.js';
import { LoadCommand } from './load.js';

export const buildCommands: CommandClass<BaseContext>[] = [BuildCommand, PruneCommand, LoadCommand, UnpackCommand, ImagesCommand, InspectCommand, ParseCommand];
