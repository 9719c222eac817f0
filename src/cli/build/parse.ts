import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { KeelError } from '../../util/errors.js';

/** `keel-build parse`: a Dockerfile's parse tree (BuildKit's dump form), typed instructions or stages. */
export class ParseCommand extends KeelCommand {
  static override paths = [['parse']];
  static override usage = Command.Usage({
    description: 'parse a Dockerfile and print its parse tree, instructions or stages',
    details:
      '`--dump` (the default) prints the parse tree in the s-expression form of BuildKit\'s parser dumper, one line per instruction, so both parsers can be compared line by line. `--json` prints the typed instructions (unexpanded). `--stages` prints the resolved stages: global ARGs, FROM references expanded, dependencies and build order for `--target`. FILE `-` reads standard input. Warnings go to standard error.',
    examples: [
      ['Dump like BuildKit', 'keel-build parse --dump Dockerfile'],
      ['Typed instructions', 'keel-build parse --json Dockerfile'],
      ['Stages for a target', 'keel-build parse --stages --build-arg VERSION=1.2 --target release Dockerfile'],
    ],
  });

  dump = Option.Boolean('--dump', false, { description: 'print the parse tree as BuildKit\'s dumper does (default)' });
  json = Option.Boolean('--json', false, { description: 'print the typed instructions as JSON' });
  stages = Option.Boolean('--stages', false, { description: 'print the resolved stages as JSON' });
  buildArgs = Option.Array('--build-arg', [], { description: 'KEY=VALUE for --stages (repeatable)' });
  target = Option.String('--target', { description: 'stage to build, for --stages (default: the last one)' });
  file = Option.String({ name: 'FILE' });

  async run(): Promise<void> {
    const modes = [this.dump, this.json, this.stages].filter(Boolean).length;
    if (modes > 1) throw new KeelError('parse: choose one of --dump, --json and --stages');
    const { readFile } = await import('node:fs/promises');
    const df = await import('../../dockerfile/index.js');
    let text: string;
    try {
      text = this.file === '-' ? await readStdin(this.context.stdin) : await readFile(this.file, 'utf8');
    } catch (err) {
      throw new KeelError(`parse: cannot read ${this.file}: ${(err as Error).message}`);
    }
    const file = this.file === '-' ? 'Dockerfile' : this.file;
    const out = this.context.stdout;
    const warn = (ws: { file: string; line: number; message: string }[]) => {
      for (const w of ws) this.context.stderr.write(`${w.file}:${w.line}: warning: ${w.message}\n`);
    };

    if (!this.json && !this.stages) {
      const ast = df.parseAst(text, { file });
      warn(ast.warnings);
      out.write(df.dumpAst(ast) + '\n');
      return;
    }

    const parsed = df.parseDockerfile(text, { file });
    warn(parsed.warnings);
    if (this.json) {
      const { ast: _ast, ...rest } = parsed;
      out.write(JSON.stringify(rest, null, 2) + '\n');
      return;
    }

    const buildArgs: Record<string, string> = {};
    for (const a of this.buildArgs) {
      const i = a.indexOf('=');
      if (i <= 0) throw new KeelError(`parse: --build-arg ${JSON.stringify(a)} is not KEY=VALUE`);
      buildArgs[a.slice(0, i)] = a.slice(i + 1);
    }
    const plan = df.resolveStages(parsed, { buildArgs, target: this.target });
    for (const k of plan.unusedBuildArgs) this.context.stderr.write(`warning: build arg ${k} is not used by any ARG\n`);
    const summary = {
      globalArgs: Object.fromEntries(plan.globalArgs),
      target: plan.target.index,
      order: plan.order.map((s) => s.index),
      stages: plan.stages.map((s) => ({
        index: s.index,
        name: s.name ?? null,
        line: s.from.startLine,
        baseName: s.baseName,
        base: s.base,
        platform: s.platform ?? null,
        reachable: s.reachable,
        instructions: s.instructions.length,
        dependencies: s.dependencies.map((d) => ({ via: d.via, value: d.value, ref: d.ref, line: d.instruction.startLine })),
      })),
      unusedBuildArgs: plan.unusedBuildArgs,
    };
    out.write(JSON.stringify(summary, null, 2) + '\n');
  }
}

async function readStdin(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
