// keel-conformance: checks an OCI runtime CLI against the runtime-spec, or an OCI image layout
// against the image-spec. Output: a table (default), TAP (--tap) or JSON (--json); the exit code is
// 0 only when every required (MUST) check passed, 1 when one failed, 2 when the suite could not run.
import { Builtins, Command, Option } from 'clipanion';
import { KeelCommand, runCli } from '../src/cli/common.js';
import { KeelError } from '../src/util/errors.js';
import type { Report } from './report.js';

abstract class ReportCommand extends KeelCommand {
  json = Option.Boolean('--json', false, { description: 'Print the report as JSON' });
  tap = Option.Boolean('--tap', false, { description: 'Print the report as TAP version 13' });

  protected async print(report: Report): Promise<number> {
    const { formatJson, formatTap, formatTable } = await import('./report.js');
    const text = this.json ? formatJson(report) : this.tap ? formatTap(report) : formatTable(report);
    process.stdout.write(text);
    return report.ok ? 0 : 1;
  }

  protected notRunnable(err: unknown): never {
    if (err instanceof KeelError) throw new KeelError(err.message, { exitCode: 2 });
    throw err;
  }
}

class RuntimeCommand extends ReportCommand {
  static override paths = [['runtime']];
  static override usage = Command.Usage({
    description: 'Check an OCI runtime CLI against the OCI runtime-spec',
    details: `
      Runs a static probe in bundles made in a temporary directory and drives the runtime through its
      runc-compatible command line (\`RUNTIME --root TMP create/start/state/kill/delete/run\`). Each check
      names the spec section it verifies; MUST checks are required, SHOULD checks are reported only.
      Needs root. The probe is compiled with \`gcc -static\` on first use (cached).
    `,
    examples: [
      ['Check runc', '$0 runtime --runtime runc'],
      ['Check crun on a hybrid cgroup host', '$0 runtime --runtime crun --hide-unified-cgroup'],
      ['Only the hook checks, as TAP', '$0 runtime --runtime ./dist/keel.mjs --filter hooks --tap'],
    ],
  });
  runtime = Option.String('--runtime', { required: true, description: 'The runtime binary to check (path or name on PATH)' });
  hideUnified = Option.Boolean('--hide-unified-cgroup', false, { description: 'Run the runtime with /sys/fs/cgroup/unified unmounted in a private mount namespace (crun on hybrid cgroup hosts)' });
  probe = Option.String('--probe', { description: 'Use this prebuilt static probe instead of compiling one' });
  filter = Option.String('--filter', { description: 'Only run checks whose id matches this regular expression' });
  jobs = Option.String('--jobs,-j', { description: 'Checks run at once (default 4)' });
  keep = Option.Boolean('--keep', false, { description: 'Keep the temporary directory (bundles, runtime output)' });
  list = Option.Boolean('--list', false, { description: 'List the checks without running them' });

  async run(): Promise<number> {
    const { runRuntimeSuite, runtimeChecks } = await import('./runtime/index.js');
    let filter: RegExp | undefined;
    try {
      filter = this.filter ? new RegExp(this.filter) : undefined;
    } catch {
      throw new KeelError(`invalid --filter regular expression: ${this.filter}`, { exitCode: 2 });
    }
    if (this.list) {
      for (const c of runtimeChecks().filter((x) => !filter || filter.test(x.id))) process.stdout.write(`${c.level.padEnd(6)} ${c.id}  ${c.url}\n    ${c.statement}\n`);
      return 0;
    }
    const jobs = this.jobs === undefined ? undefined : Number(this.jobs);
    if (jobs !== undefined && !(Number.isInteger(jobs) && jobs > 0)) throw new KeelError(`invalid value for --jobs: ${JSON.stringify(this.jobs)}`, { exitCode: 2 });
    let report: Report;
    try {
      report = await runRuntimeSuite({ runtime: this.runtime, hideUnifiedCgroup: this.hideUnified, probe: this.probe, filter, jobs, keepTemp: this.keep });
    } catch (err) {
      this.notRunnable(err);
    }
    return this.print(report);
  }
}

class ImageCommand extends ReportCommand {
  static override paths = [['image']];
  static override usage = Command.Usage({
    description: 'Check an OCI image layout against the OCI image-spec',
    details: `
      Validates oci-layout, index.json and every manifest, index and config reachable from it (or from
      the manifest tagged TAG) against the image-spec schemas; checks the digest and size of every blob,
      media types, layer diffIDs against the config's rootfs.diff_ids, tar entries, and whiteouts.
    `,
    examples: [
      ['Check every image of a layout', '$0 image ./out'],
      ['Check one tag, as JSON', '$0 image ./out:latest --json'],
    ],
  });
  ref = Option.String({ name: 'DIR[:TAG]' });

  async run(): Promise<number> {
    const { runImageSuite, parseLayoutRef } = await import('./image/index.js');
    let report: Report;
    try {
      report = await runImageSuite(parseLayoutRef(this.ref));
    } catch (err) {
      this.notRunnable(err);
    }
    return this.print(report);
  }
}

class CrashCommandCli extends KeelCommand {
  static override paths = [['crash']];
  static override usage = Command.Usage({
    description: 'Kill a runtime at every instant of its commands and check that delete --force leaves nothing',
    details: `
      For each kill: a fresh container, the setup its command needs, the command (create, start,
      exec -d, run or delete --force) SIGKILLed after a delay, then \`RUNTIME delete --force ID\`, and a
      search for what is left: processes (the sweep is a subreaper, so orphans come to it), cgroup
      directories in every hierarchy, mounts of the bundle, state entries (\`list\`, the root
      directory) and stray files beside the pid file. Delays are calibrated by timing each command
      first; a share of the kills is aimed just after the container process appears. Exit code 0
      when nothing was left, 1 when something was, 2 when the sweep could not run. Needs root.
    `,
    examples: [
      ['500 kills of runc', '$0 crash --runtime runc --kills 500'],
      ['crun on a hybrid cgroup host', '$0 crash --runtime crun --hide-unified-cgroup --kills 500'],
      ['Only create, plain bundles, as JSON', '$0 crash --runtime ./dist/keel --commands create --variants plain --json'],
    ],
  });
  runtime = Option.String('--runtime', { required: true, description: 'The runtime binary (path or name on PATH)' });
  kills = Option.String('--kills,-n', '500', { description: 'Kills in all, spread over commands and bundle variants (default 500)' });
  commands = Option.String('--commands', { description: `Commands to kill, comma-separated (default ${CRASH_COMMANDS_LIST})` });
  variants = Option.String('--variants', { description: 'Bundle variants, comma-separated: plain, userns, hooks (default all)' });
  seed = Option.String('--seed', { description: 'Seed of the delays and their order (default random; printed)' });
  hideUnified = Option.Boolean('--hide-unified-cgroup', false, { description: 'Run the runtime in a private mount namespace without /sys/fs/cgroup/unified (crun on hybrid cgroup hosts)' });
  probe = Option.String('--probe', { description: 'Use this prebuilt static probe instead of compiling one' });
  keep = Option.Boolean('--keep', false, { description: 'Keep the temporary directory (bundles, runtime output)' });
  json = Option.Boolean('--json', false, { description: 'Print the report as JSON' });
  progress = Option.Boolean('--progress', false, { description: 'Print a line per kill on stderr' });

  async run(): Promise<number> {
    const { runCrashSweep, formatCrashReport, CRASH_COMMANDS, CRASH_VARIANTS } = await import('./crash/index.js');
    const list = <T extends string>(text: string | undefined, allowed: readonly T[], flag: string): T[] | undefined => {
      if (text === undefined) return undefined;
      const items = text.split(',').map((s) => s.trim()).filter(Boolean);
      for (const x of items) if (!(allowed as readonly string[]).includes(x)) throw new KeelError(`invalid ${flag}: ${JSON.stringify(x)} (one of ${allowed.join(', ')})`, { exitCode: 2 });
      return items as T[];
    };
    const kills = Number(this.kills);
    if (!(Number.isInteger(kills) && kills > 0)) throw new KeelError(`invalid value for --kills: ${JSON.stringify(this.kills)}`, { exitCode: 2 });
    const seed = this.seed === undefined ? undefined : Number(this.seed);
    if (seed !== undefined && !Number.isInteger(seed)) throw new KeelError(`invalid value for --seed: ${JSON.stringify(this.seed)}`, { exitCode: 2 });
    let report;
    try {
      report = await runCrashSweep({
        runtime: this.runtime, kills, seed, hideUnifiedCgroup: this.hideUnified, probe: this.probe, keepTemp: this.keep,
        commands: list(this.commands, CRASH_COMMANDS, '--commands'), variants: list(this.variants, CRASH_VARIANTS, '--variants'),
        onKill: this.progress ? (k, done, total) => process.stderr.write(`${done}/${total} ${k.command} ${k.variant} ${k.mode} ${k.delayMs} ms${k.landed ? '' : ' (finished)'}: ${k.leftovers.length ? k.leftovers.map((l) => `${l.kind} ${l.what}`).join('; ') : 'clean'}\n`) : undefined,
      });
    } catch (err) {
      if (err instanceof KeelError) throw new KeelError(err.message, { exitCode: 2 });
      throw err;
    }
    process.stdout.write(this.json ? JSON.stringify(report, null, 2) + '\n' : formatCrashReport(report));
    return report.ok ? 0 : 1;
  }
}

const CRASH_COMMANDS_LIST = 'create, start, exec, run, delete';

const code = await runCli(process.argv.slice(2), {
  binaryName: 'keel-conformance',
  binaryLabel: 'keel-conformance: OCI runtime-spec and image-spec conformance checks',
  commands: [Builtins.HelpCommand, RuntimeCommand, ImageCommand, CrashCommandCli],
});
process.exitCode = code;
