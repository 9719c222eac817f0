// The runtime's state store: one directory per container under --root, holding state.json
// (written atomically: a temporary file renamed over it) and a lock file every command takes.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeelError } from '../util/errors.js';

/** What keel keeps about a container (a superset of the runtime-spec state). */
export interface ContainerRecord {
  ociVersion: string;
  id: string;
  pid: number;
  /** Start time of the init (field 22 of /proc/PID/stat), to tell it from a reused pid. */
  pidStartTime: string;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations?: Record<string, string>;
  /** Set while `create` is in progress. */
  creating?: boolean;
  /** How to find the container's cgroup again (see resources.ts). */
  cgroup?: import('./resources.js').CgroupRecord;
  /** The host paths of the container's namespaces, for exec and hooks. */
  namespacePaths?: Record<string, string>;
  config: unknown;
}

const ID_RE = /^[\w+.-]+$/;

/** Checks a container id as runc does: letters, digits, `_+.-`, not `.`/`..`. */
export function checkId(id: string): void {
  if (!id) throw new KeelError('container id cannot be empty');
  if (!ID_RE.test(id) || id === '.' || id === '..') throw new KeelError(`invalid container id ${JSON.stringify(id)}: use letters, digits, _ + . -`);
}

export class StateStore {
  constructor(readonly root: string) {}

  dir(id: string): string { return join(this.root, id); }
  fifo(id: string): string { return join(this.dir(id), 'exec.fifo'); }

  /** Claims the id: creates its directory, failing if a container with that id exists. */
  claim(id: string): string {
    checkId(id);
    mkdirSync(this.root, { recursive: true, mode: 0o711 });
    const dir = this.dir(id);
    try {
      mkdirSync(dir, { mode: 0o711 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeelError(`container with id ${id} already exists`);
      throw err;
    }
    return dir;
  }

  exists(id: string): boolean {
    return existsSync(join(this.dir(id), 'state.json'));
  }

  load(id: string): ContainerRecord {
    checkId(id);
    let text: string;
    try {
      text = readFileSync(join(this.dir(id), 'state.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new KeelError(`container ${id} does not exist`);
      throw err;
    }
    try { return JSON.parse(text) as ContainerRecord; } catch {
      throw new KeelError(`container ${id}: its state file is corrupt: ${join(this.dir(id), 'state.json')}`);
    }
  }

  save(rec: ContainerRecord): void {
    const dir = this.dir(rec.id);
    const tmp = join(dir, `.state.json.${process.pid}`);
    writeFileSync(tmp, JSON.stringify(rec));
    renameSync(tmp, join(dir, 'state.json'));
  }

  remove(id: string): void {
    rmSync(this.dir(id), { recursive: true, force: true });
  }

  ids(): string[] {
    try {
      return readdirSync(this.root, { withFileTypes: true }).filter((d) => d.isDirectory() && ID_RE.test(d.name)).map((d) => d.name).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** Runs `fn` holding the container's lock (flock, released when the process dies). */
  async withLock<T>(id: string, fn: () => Promise<T> | T): Promise<T> {
    const { libc } = await import('./sys/libc.js');
    const c = libc();
    let fd: number;
    try {
      fd = openSync(join(this.dir(id), '.lock'), 'a');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new KeelError(`container ${id} does not exist`);
      throw err;
    }
    try {
      if (c.flock(fd, 2 /* LOCK_EX */) !== 0) throw new Error(`flock: ${c.strerror(c.errno())}`);
      return await fn();
    } finally {
      closeSync(fd);
    }
  }
}
