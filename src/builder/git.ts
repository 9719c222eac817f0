// ADD of a git repository, as BuildKit reads one: `https://host/repo.git[#REF[:SUBDIR]]`,
// `git@host:repo.git#...`, `git://`, `ssh://`. REF is a branch, a tag or a commit (default: the
// remote's HEAD); it is resolved to a commit first (`git ls-remote`), which is what the step's cache
// key holds, then that commit alone is fetched (shallow when the server allows) and checked out.
// The tree goes to the destination directory without .git unless --keep-git-dir; file times are
// the commit's time, so the layer is the same wherever and whenever it is built. git runs with no
// terminal prompt; ssh remotes use the agent given with `--ssh default` when there is one.
import * as fs from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { KeelError } from '../util/errors.js';

export interface GitSource {
  /** What git is given to fetch from. */
  url: string;
  ref?: string;
  subdir?: string;
}

/** A git source of ADD, or undefined when `src` is not one. */
export function parseGitSource(src: string): GitSource | undefined {
  const hash = src.indexOf('#');
  const url = hash < 0 ? src : src.slice(0, hash);
  const fragment = hash < 0 ? '' : src.slice(hash + 1);
  let isGit = /^git@[^:]+:/.test(url) || /^(git|ssh|git\+ssh):\/\//i.test(url);
  if (!isGit && /^https?:\/\//i.test(url)) {
    try {
      isGit = new URL(url).pathname.replace(/\/+$/, '').endsWith('.git');
    } catch {
      isGit = false;
    }
  }
  if (!isGit) return undefined;
  const colon = fragment.indexOf(':');
  const ref = colon < 0 ? fragment : fragment.slice(0, colon);
  const subdir = colon < 0 ? '' : fragment.slice(colon + 1);
  return { url, ...(ref ? { ref } : {}), ...(subdir ? { subdir } : {}) };
}

function git(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; what: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, {
      cwd: opts.cwd,
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: '/bin/false', LC_ALL: 'C', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    child.on('error', (e) => reject(new KeelError(`${opts.what}: cannot run git: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'git is not installed' : e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new KeelError(`${opts.what}: ${err.trim().split('\n').filter(Boolean).pop() ?? `git ${args[0]} exited with ${code}`}`));
    });
  });
}

/** The commit `source.ref` names on the remote (a full commit id given is taken as it is). */
export async function resolveGitCommit(source: GitSource, env: NodeJS.ProcessEnv): Promise<string> {
  const ref = source.ref;
  if (ref && /^[0-9a-f]{40}$/.test(ref)) return ref;
  const out = await git(['ls-remote', '--', source.url], { env, what: `git ls-remote ${source.url}` });
  const refs = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [sha, name] = line.split('\t');
    if (sha && name) refs.set(name, sha);
  }
  const want = ref ?? 'HEAD';
  const candidates = ref ? [`refs/tags/${ref}^{}`, `refs/tags/${ref}`, `refs/heads/${ref}`, ref, `${ref}^{}`] : ['HEAD'];
  for (const c of candidates) {
    const sha = refs.get(c);
    if (sha) return sha;
  }
  if (ref && /^[0-9a-f]{7,39}$/.test(ref)) return ref;
  throw new KeelError(`${source.url}: no branch, tag or commit ${JSON.stringify(want)} there`);
}

/** Checks `commit` of the remote out into the empty directory `dir` (its .git inside). */
export async function checkoutGit(source: GitSource, commit: string, dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const what = `git fetch ${source.url}`;
  await git(['init', '-q', dir], { env, what });
  await git(['remote', 'add', 'origin', source.url], { cwd: dir, env, what });
  try {
    await git(['fetch', '-q', '--depth', '1', '--no-tags', 'origin', commit], { cwd: dir, env, what });
  } catch {
    // Servers that refuse a commit by id (uploadpack.allowReachableSHA1InWant off): everything.
    await git(['fetch', '-q', '--tags', 'origin', '+refs/heads/*:refs/remotes/origin/*'], { cwd: dir, env, what });
  }
  await git(['-c', 'advice.detachedHead=false', 'checkout', '-q', commit], { cwd: dir, env, what: `git checkout ${commit}` });
  const full = (await git(['rev-parse', 'HEAD'], { cwd: dir, env, what })).trim();
  if (!full.startsWith(commit)) throw new KeelError(`${source.url}: checked out ${full}, not ${commit}`);
  // Every file gets the commit's time (a checkout's own times are when it ran).
  const time = Number((await git(['show', '-s', '--format=%ct', 'HEAD'], { cwd: dir, env, what })).trim());
  setTimes(dir, new Date(time * 1000));
}

function setTimes(dir: string, t: Date): void {
  for (const name of fs.readdirSync(dir)) {
    const p = join(dir, name);
    const st = fs.lstatSync(p);
    if (st.isDirectory()) setTimes(p, t);
    fs.lutimesSync(p, t, t);
  }
  fs.lutimesSync(dir, t, t);
}
