// The list of keel's commands. Each command lives in its own file of this folder.
import type { CommandClass, BaseContext } from 'clipanion';
import { VersionCommand } from './version.js';
import { SpecCommand } from './spec.js';
import { lifecycleCommands } from './lifecycle.js';
import { ExecCommand } from './exec.js';
import { PauseCommand } from './pause.js';
import { ResumeCommand } from './resume.js';
import { PsCommand } from './ps.js';
import { EventsCommand } from './events.js';
import { UpdateCommand } from './update.js';
import { FeaturesCommand } from './features.js';
import { CheckpointCommand, RestoreCommand } from './checkpoint.js';

export const runtimeCommands: CommandClass<BaseContext>[] = [VersionCommand, SpecCommand, ...lifecycleCommands, ExecCommand,
  PauseCommand, ResumeCommand, PsCommand, EventsCommand, UpdateCommand, FeaturesCommand, CheckpointCommand, RestoreCommand];
