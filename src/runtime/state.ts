// The runtime's state store: one directory per container under --root, holding state.json
// (written atomically: a temporary file renamed over it) and a lock file every command takes.
import { existsSync, linkSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
  /** The process doing the create ("pid starttime"): a create whose runtime died is no longer in progress. */
  creator?: string;
  /** How to find the container's cgroup again (see resources.ts). */
  cgroup?: import('./resources.js').CgroupRecord;
  /**
   * Process groups of hooks running now ("pgid starttime" of the hook that leads it), recorded
   * before each hook execs: `delete --force` kills what a killed runtime's hooks left running.
   */
  hookGroups?: string[];
  /** Files a command may be writing outside the state directory (a pid file's temporary name). */
  tempFiles?: string[];
  /** The host paths of the container's namespaces, for exec and hooks. */
  namespacePaths?: Record<string, string>;
  config: unknown;
}

const ID_RE = /^[\w+.-]+$/;

/** Field 22 of /proc/PID/stat (start time), '' when there is no such process. */
export function startTimeOf(pid: number): string {
  if (!(pid > 0)) return '';
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch { return ''; }
}

/** Whether process `pid` started at `start` (startTimeOf) still lives: a zombie does not. */
function livesAs(pid: number, start: string): boolean {
  if (!(pid > 0) || !start) return false;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = fields.slice(fields.lastIndexOf(')') + 2).split(' ');
    return rest[19] === start && rest[0] !== 'Z' && rest[0] !== 'X';
  } catch { return false; }
}

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
    try {
      writeFileSync(tmp, JSON.stringify(rec));
    } catch (err) {
      // Its directory is gone: a `delete --force` removed the container meanwhile.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new KeelError(`container ${rec.id} was deleted while this command was working on it`);
      throw err;
    }
    renameSync(tmp, join(dir, 'state.json'));
  }

  remove(id: string): void {
    // Renamed aside first: other commands see it gone at once, and none can add a file (a lock)
    // to it while it is emptied (which made rmdir fail with ENOTEMPTY). '~' keeps it out of ids().
    // The name says who removes it ("pid starttime"): what a remover killed half-way left is
    // swept by the next removal.
    const aside = join(this.root, `.removed~${id}~${StateStore.self().replace(' ', '~')}`);
    try {
      renameSync(this.dir(id), aside);
      rmSync(aside, { recursive: true, force: true, maxRetries: 5, retryDelay: 2 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.removeAbandoned();
  }

  /** Removes what removals killed half-way left aside (their remover is gone). */
  private removeAbandoned(): void {
    let names: string[] = [];
    try { names = readdirSync(this.root); } catch { return; }
    for (const name of names) {
      const m = /^\.removed~.*~(\d+)~(\d+)$/.exec(name);
      if (!m || startTimeOf(Number(m[1])) === m[2]) continue;
      rmSync(join(this.root, name), { recursive: true, force: true });
    }
  }

  /** "pid starttime" of this process, as locks and records name their owner. */
  static self(): string {
    return `${process.pid} ${startTimeOf(process.pid)}`;
  }

  ids(): string[] {
    try {
      return readdirSync(this.root, { withFileTypes: true }).filter((d) => d.isDirectory() && ID_RE.test(d.name)).map((d) => d.name).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /**
   * Runs `fn` holding the container's lock: a lock file naming its owner (pid and start time). It
   * is written whole under a name of this process, then linked to `.lock` (link fails when the lock
   * exists), so the lock is never seen empty, even when its taker is killed half-way. A lock whose
   * owner has died is taken over, so a crashed command never blocks the container. No native code
   * is needed, which keeps start/kill/delete fast.
   */
  async withLock<T>(id: string, fn: () => Promise<T> | T): Promise<T> {
    checkId(id);
    const dir = this.dir(id);
    const lock = join(dir, '.lock');
    const me = StateStore.self();
    const mine = `${lock}.${process.pid}`;
    try {
      writeFileSync(mine, me);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new KeelError(`container ${id} does not exist`);
      throw err;
    }
    const deadline = Date.now() + 30_000;
    try {
      for (;;) {
        try {
          linkSync(mine, lock);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') throw new KeelError(`container ${id} does not exist`);
          if (code !== 'EEXIST') throw err;
        }
        let owner = '';
        let age = 0;
        try { owner = readFileSync(lock, 'utf8'); age = Date.now() - statSync(lock).mtimeMs; } catch { continue; /* released meanwhile */ }
        const [pid, start] = owner.split(' ');
        // Gone: the owner (dead, or a zombie its parent has not reaped yet), or (an empty lock, from
        // a keel that created it before writing it) the writer, a moment after it created the file.
        if (owner ? !livesAs(Number(pid), start ?? '') : age > 2000) {
          // Take the stale lock aside and check it is still the one we judged.
          const aside = `${lock}.stale.${process.pid}`;
          try {
            renameSync(lock, aside);
            if (readFileSync(aside, 'utf8') !== owner) renameSync(aside, lock);
            else rmSync(aside, { force: true });
          } catch { /* someone else got there first */ }
          continue;
        }
        if (Date.now() > deadline) throw new KeelError(`container ${id} is locked by process ${pid}`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    } finally {
      rmSync(mine, { force: true });
    }
    try {
      return await fn();
    } finally {
      try { if (readFileSync(lock, 'utf8') === me) rmSync(lock, { force: true }); } catch { /* removed with the container */ }
    }
  }
}
