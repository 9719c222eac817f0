// `keel update [--resources FILE|-] [flags] ID`: changes the resource limits of a container (runc's update).
// The flags are parsed here rather than by clipanion, which takes "-1" (unlimited, as runc's users
// write it: `--memory-swap -1`) for an option name.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { globals, writeLog } from './globals.js';
import { KeelError } from '../../util/errors.js';

/** runc's flag names → keys of UpdateFlags ("resources" is the JSON file). */
const FLAGS: Record<string, string> = {
  r: 'resources', resources: 'resources', 'blkio-weight': 'blkioWeight', 'cpu-period': 'cpuPeriod', 'cpu-quota': 'cpuQuota',
  'cpu-rt-period': 'cpuRtPeriod', 'cpu-rt-runtime': 'cpuRtRuntime', 'cpu-share': 'cpuShares', 'cpu-shares': 'cpuShares',
  'cpuset-cpus': 'cpusetCpus', 'cpuset-mems': 'cpusetMems', 'kernel-memory': 'kernelMemory', 'kernel-memory-tcp': 'kernelMemoryTcp',
  memory: 'memory', 'memory-reservation': 'memoryReservation', 'memory-swap': 'memorySwap', 'pids-limit': 'pidsLimit',
  'l3-cache-schema': 'l3CacheSchema', 'mem-bw-schema': 'memBwSchema',
};

/** Splits update's arguments into flag values and the container id (flags may come before or after it). */
export function parseUpdateArgs(args: string[]): { flags: Record<string, string>; id: string } {
  const flags: Record<string, string> = {};
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') { positional.push(...args.slice(i + 1)); break; }
    if (!arg.startsWith('-') || arg === '-') { positional.push(arg); continue; }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const key = FLAGS[name];
    if (!key) throw new KeelError(`update: unknown flag ${arg.split('=')[0]} (see keel update --help)`);
    let value: string;
    if (eq >= 0) value = body.slice(eq + 1);
    else {
      if (i + 1 >= args.length) throw new KeelError(`update: flag ${arg} needs a value`);
      value = args[++i]!;
    }
    flags[key] = value;
  }
  if (positional.length !== 1) {
    throw new KeelError(positional.length ? `update: expected one container id, got ${positional.length}: ${positional.join(' ')}` : 'update: missing the container id');
  }
  return { flags, id: positional[0]! };
}

export class UpdateCommand extends KeelCommand {
  static override paths = [['update']];
  static override usage = Command.Usage({
    description: 'update the resource limits of a container',
    details: [
      'Flags (runc\'s): --memory, --memory-reservation, --memory-swap, --kernel-memory, --kernel-memory-tcp, --cpu-share,',
      '--cpu-period, --cpu-quota, --cpu-rt-period, --cpu-rt-runtime, --cpuset-cpus, --cpuset-mems, --pids-limit, --blkio-weight.',
      'Values left out (or 0) are unchanged. Memory sizes take units (64m, 1.5g, 512k); -1 means unlimited.',
      '`--resources FILE` (`-` for stdin) takes the linux.resources JSON of config.json instead; the other flags are then ignored.',
    ].join(' '),
    examples: [['Limit memory to 64 MiB', 'keel update --memory 64m c1'], ['From JSON on stdin', 'echo \'{"pids":{"limit":100}}\' | keel update -r - c1']],
  });
  args = Option.Proxy();
  async run() {
    if (this.args.includes('-h') || this.args.includes('--help')) {
      this.context.stdout.write(this.cli.usage(UpdateCommand, { detailed: true }));
      return;
    }
    const { flags, id } = parseUpdateArgs(this.args);
    const rt = await import('../../runtime/index.js');
    const ctx = { root: globals.root, systemdCgroup: globals.systemdCgroup, warn: (m: string) => writeLog('warning', m) };
    let resources;
    if (flags.resources !== undefined && flags.resources !== '') {
      const source = flags.resources === '-' ? 'standard input' : flags.resources;
      let text: string;
      try {
        text = readFileSync(flags.resources === '-' ? 0 : flags.resources, 'utf8');
      } catch (err) {
        throw new KeelError(`--resources: cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      resources = await rt.parseResourcesJson(text, source);
    } else {
      resources = rt.resourcesFromFlags(flags);
    }
    await rt.update(ctx, id, resources);
  }
}
