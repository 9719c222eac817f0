import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { KeelError } from '../../util/errors.js';

function keyValues(list: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of list) {
    const i = a.indexOf('=');
    if (i <= 0) throw new KeelError(`${flag} ${JSON.stringify(a)}: expected KEY=VALUE`);
    out[a.slice(0, i)] = a.slice(i + 1);
  }
  return out;
}

/** `type=oci,dest=DIR` → { type: 'oci', dest: 'DIR' } (CSV of key=value, as buildx writes it). */
function csvOptions(value: string, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(',')) {
    const i = part.indexOf('=');
    if (i <= 0) throw new KeelError(`${flag} ${JSON.stringify(value)}: expected key=value pairs separated by commas`);
    out[part.slice(0, i).trim()] = part.slice(i + 1);
  }
  return out;
}

/** `keel-build build [flags] CONTEXT`: builds a Dockerfile into an OCI image. */
export class BuildCommand extends KeelCommand {
  static override paths = [['build'], ['bud']];
  static override usage = Command.Usage({
    description: 'build an image from a Dockerfile',
    details: [
      'Builds CONTEXT/Dockerfile (or -f FILE; `-f -` reads standard input) into an OCI image. Independent stages build concurrently; stages the target does not need are skipped. Every step is cached in the store (default /var/lib/keel as root, $XDG_DATA_HOME/keel otherwise) by its parent, its instruction and the content of the files it reads; `--no-cache` runs every step again.',
      'RUN steps run in containers of keel\'s runtime, in-process, on overlay snapshots; `--runtime PATH` runs them with an OCI runtime CLI (runc, crun) instead.',
      'Where the image goes: by default into the store, tagged with each -t (FROM finds it there by name). `--output type=oci,dest=DIR` writes an OCI layout (ref names: the tags of -t, else latest), `type=oci-archive,dest=FILE` an OCI archive, `type=registry` pushes to every -t NAME:TAG. On success the image\'s manifest digest is printed.',
      'FROM takes scratch, a stage, oci-layout://DIR[:TAG], an image of the store, or a registry reference (pulled; registries on the loopback interface and --insecure-registry hosts use plain HTTP).',
      '`--cache-to` exports the build cache in BuildKit\'s cache format (application/vnd.buildkit.cacheconfig.v0) to an OCI layout directory or a registry reference; `--cache-from` uses such a cache: its steps are cache hits as if built here, their layers fetched only when needed.',
    ].join('\n\n'),
    examples: [
      ['Build into the store', 'keel-build build -t app:1 .'],
      ['Build to an OCI layout', 'keel-build build --output type=oci,dest=./out -t app:1 .'],
      ['Push to a registry', 'keel-build build -t localhost:5000/app:1 --output type=registry .'],
      ['RUN with runc', 'keel-build build --runtime /usr/sbin/runc -t app .'],
    ],
  });

  file = Option.String('-f,--file', { description: 'the Dockerfile (default CONTEXT/Dockerfile; - for standard input)' });
  tags = Option.Array('-t,--tag', [], { description: 'NAME[:TAG] of the image (repeatable)' });
  buildArgs = Option.Array('--build-arg', [], { description: 'KEY=VALUE for ARG (repeatable)' });
  target = Option.String('--target', { description: 'the stage to build (default the last)' });
  noCache = Option.Boolean('--no-cache', false, { description: 'run every step again' });
  outputs = Option.Array('--output,-o', [], { description: 'type=oci,dest=DIR | type=oci-archive,dest=FILE | type=registry (repeatable)' });
  compression = Option.String('--compression', 'gzip', { description: 'gzip or zstd, for exported layers' });
  runtime = Option.String('--runtime', { description: 'an OCI runtime CLI for RUN steps (runc, crun ...)' });
  progress = Option.String('--progress', 'auto', { description: 'auto, plain, tty or quiet' });
  platform = Option.String('--platform', { description: 'OS/ARCH[/VARIANT] of the image (default this machine\'s)' });
  store = Option.String('--store,--root', { description: 'the store directory' });
  contexts = Option.Array('--build-context', [], { description: 'NAME=DIR or NAME=oci-layout://DIR[:TAG] for FROM/COPY --from=NAME (repeatable)' });
  ssh = Option.Array('--ssh', [], { description: 'default | ID=SOCKET | ID=KEY[,KEY...]: an ssh agent for RUN --mount=type=ssh (repeatable; default is $SSH_AUTH_SOCK)' });
  secrets = Option.Array('--secret', [], { description: 'id=ID,src=FILE or id=ID,env=VAR for RUN --mount=type=secret (repeatable)' });
  insecure = Option.Array('--insecure-registry', [], { description: 'a registry HOST[:PORT] spoken to over plain HTTP (repeatable)' });
  creds = Option.String('--creds', { description: 'USER:PASSWORD for the registries this build pulls from and pushes to' });
  offline = Option.Boolean('--offline', false, { description: 'never pull from a registry' });
  quiet = Option.Boolean('-q,--quiet', false, { description: 'no progress; print the digest only' });
  maxSize = Option.String('--max-unpacked-size', { description: 'SIZE (e.g. 10G): the most a base image\'s layer may unpack to (default: the store\'s free space less a margin)' });
  cacheTo = Option.Array('--cache-to', [], { description: 'type=local,dest=DIR[,mode=min|max] | type=registry,ref=NAME:TAG[,mode=min|max]: export the build cache (repeatable)' });
  cacheFrom = Option.Array('--cache-from', [], { description: 'type=local,src=DIR | type=registry,ref=NAME:TAG (or just NAME:TAG): use a build cache (repeatable)' });
  iidfile = Option.String('--iidfile', { description: 'write the image\'s manifest digest to this file' });
  contextDir = Option.String({ name: 'CONTEXT' });

  async run(): Promise<number | void> {
    // Without root: the same command again in a user namespace of the user's subordinate ids.
    if (process.getuid?.() !== 0 && process.env.KEEL_BUILD_ROOTLESS !== '1') {
      const { runInUserNamespace } = await import('../../builder/rootless.js');
      return runInUserNamespace(process.argv.slice(2));
    }
    // Each in-process RUN waits for its container on one of libuv's threads: leave room for I/O.
    process.env.UV_THREADPOOL_SIZE ??= '16';
    if (this.compression !== 'gzip' && this.compression !== 'zstd') throw new KeelError(`--compression ${JSON.stringify(this.compression)}: gzip or zstd`);
    const modes = ['auto', 'plain', 'tty', 'quiet'];
    if (!modes.includes(this.progress)) throw new KeelError(`--progress ${JSON.stringify(this.progress)}: one of ${modes.join(', ')}`);
    const outputs: import('../../builder/index.js').OutputSpec[] = [];
    for (const o of this.outputs) {
      const kv = csvOptions(o, '--output');
      const type = kv.type;
      if (type === 'oci' || type === 'oci-archive') {
        if (!kv.dest) throw new KeelError(`--output ${o}: dest=PATH is required for type=${type}`);
        outputs.push({ type, dest: kv.dest });
      } else if (type === 'registry' || type === 'image' && kv.push === 'true') {
        outputs.push({ type: 'registry' });
      } else if (type === 'store' || type === 'image') {
        outputs.push({ type: 'store' });
      } else {
        throw new KeelError(`--output ${o}: type must be oci, oci-archive, registry or store`);
      }
    }
    const secrets: Record<string, { src?: string; env?: string }> = {};
    for (const s of this.secrets) {
      const kv = csvOptions(s, '--secret');
      if (!kv.id) throw new KeelError(`--secret ${s}: id=ID is required`);
      secrets[kv.id] = kv.src ? { src: kv.src } : kv.env ? { env: kv.env } : { env: kv.id };
    }
    let credentials: { username: string; password: string } | undefined;
    if (this.creds !== undefined) {
      const i = this.creds.indexOf(':');
      if (i <= 0) throw new KeelError('--creds: expected USER:PASSWORD');
      credentials = { username: this.creds.slice(0, i), password: this.creds.slice(i + 1) };
    }
    let dockerfileText: string | undefined;
    if (this.file === '-') {
      const chunks: Buffer[] = [];
      for await (const c of this.context.stdin as unknown as AsyncIterable<unknown>) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
      dockerfileText = Buffer.concat(chunks).toString('utf8');
    }
    const maxUnpackedSize = this.maxSize === undefined ? undefined : (await import('../../layers/index.js')).parseSize(this.maxSize, '--max-unpacked-size');
    const { build, parseCacheOption, parseSshOption } = await import('../../builder/index.js');
    const ssh = Object.fromEntries(this.ssh.map((v) => parseSshOption(v)));
    const cacheTo = this.cacheTo.map((c) => parseCacheOption(c, '--cache-to') as import('../../builder/index.js').CacheExportSpec);
    const cacheFrom = this.cacheFrom.map((c) => parseCacheOption(c, '--cache-from') as import('../../builder/index.js').CacheImportSpec);
    const result = await build({
      context: this.contextDir,
      dockerfile: this.file === '-' ? undefined : this.file,
      dockerfileText,
      tags: this.tags,
      buildArgs: keyValues(this.buildArgs, '--build-arg'),
      target: this.target,
      noCache: this.noCache,
      outputs,
      compression: this.compression,
      runtime: this.runtime,
      platform: this.platform,
      store: this.store,
      buildContexts: keyValues(this.contexts, '--build-context'),
      secrets,
      progress: this.quiet ? 'quiet' : (this.progress as 'auto'),
      progressStream: this.context.stderr as never,
      registry: { insecure: this.insecure, offline: this.offline, credentials },
      ...(maxUnpackedSize === undefined ? {} : { maxUnpackedSize }),
      cacheTo,
      cacheFrom,
      ssh,
    });
    if (this.iidfile) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(this.iidfile, result.manifestDigest);
    }
    this.context.stdout.write(`${result.manifestDigest}\n`);
  }
}
