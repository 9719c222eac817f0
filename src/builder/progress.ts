// Build progress for people: on a terminal a live display, one line per step with its timer and
// CACHED/DONE/ERROR marks and the last output lines of running steps, redrawn in place; otherwise
// plain lines (`#3 [build 2/5] RUN make`, `#3 CACHED`, `#3 0.52 output`, `#3 DONE 1.2s`).

export interface StepProgress {
  cached(): void;
  done(): void;
  fail(message: string): void;
  log(line: string): void;
}

export interface Progress {
  /** A step starts: `stage` like "build 2/5", `text` the instruction. */
  step(stage: string, text: string): StepProgress;
  /** A message outside any step (exporting, pushing ...). */
  info(message: string): void;
  /** Ends the display (the live one stops redrawing). */
  close(): void;
}

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'quiet';

interface Writer {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

class QuietProgress implements Progress {
  step(): StepProgress {
    return { cached() {}, done() {}, fail() {}, log() {} };
  }
  info(): void {}
  close(): void {}
}

class PlainProgress implements Progress {
  private n = 0;
  constructor(private readonly out: Writer) {}
  step(stage: string, text: string): StepProgress {
    const id = ++this.n;
    const t0 = Date.now();
    const out = this.out;
    out.write(`#${id} [${stage}] ${text}\n`);
    return {
      cached: () => out.write(`#${id} CACHED\n`),
      done: () => out.write(`#${id} DONE ${fmt(Date.now() - t0)}\n`),
      fail: (m) => out.write(`#${id} ERROR: ${m}\n`),
      log: (line) => out.write(`#${id} ${((Date.now() - t0) / 1000).toFixed(3)} ${line}\n`),
    };
  }
  info(message: string): void {
    this.out.write(`#${++this.n} ${message}\n`);
  }
  close(): void {}
}

interface LiveStep {
  id: number;
  label: string;
  t0: number;
  t1?: number;
  state: 'running' | 'cached' | 'done' | 'error';
  lines: string[];
  message?: string;
}

class TtyProgress implements Progress {
  private readonly steps: LiveStep[] = [];
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();
  private n = 0;
  private flushedUpTo = 0;

  constructor(private readonly out: Writer) {
    this.timer = setInterval(() => this.draw(), 100);
    this.timer.unref();
  }

  step(stage: string, text: string): StepProgress {
    const s: LiveStep = { id: ++this.n, label: `[${stage}] ${text}`, t0: Date.now(), state: 'running', lines: [] };
    this.steps.push(s);
    this.draw();
    const end = (state: LiveStep['state'], message?: string) => {
      s.state = state;
      s.t1 = Date.now();
      if (message) s.message = message;
      this.draw();
    };
    return {
      cached: () => end('cached'),
      done: () => end('done'),
      fail: (m) => end('error', m),
      log: (line) => {
        s.lines.push(line);
        if (s.lines.length > 6) s.lines.shift();
      },
    };
  }

  info(message: string): void {
    const s: LiveStep = { id: ++this.n, label: message, t0: Date.now(), t1: Date.now(), state: 'done', lines: [] };
    this.steps.push(s);
    this.draw();
  }

  private width(): number {
    return Math.max(40, this.out.columns || 100);
  }

  private line(s: LiveStep): string[] {
    const w = this.width();
    const time = s.state === 'cached' ? 'CACHED' : s.state === 'error' ? 'ERROR' : fmt((s.t1 ?? Date.now()) - s.t0);
    const mark = s.state === 'running' ? '=> ' : s.state === 'error' ? '=> ERROR ' : '=> ';
    let head = `${mark}#${s.id} ${s.label}`.replace(/\s+/g, ' ');
    const room = w - time.length - 2;
    if (head.length > room) head = `${head.slice(0, room - 1)}…`;
    const out = [`${head.padEnd(room)} ${time}`];
    if (s.state === 'running' || s.state === 'error') {
      for (const l of s.lines) out.push(`   ${l}`.slice(0, w - 1));
    }
    if (s.message) out.push(`   ${s.message}`.slice(0, w - 1));
    return out;
  }

  private draw(final = false): void {
    // Steps that finished before every running one are printed once and scroll away.
    let upTo = this.flushedUpTo;
    while (upTo < this.steps.length && this.steps[upTo]!.state !== 'running') upTo++;
    let text = '';
    if (this.drawn) text += `\x1b[${this.drawn}A\x1b[J`;
    for (let i = this.flushedUpTo; i < upTo; i++) text += `${this.line(this.steps[i]!).join('\n')}\n`;
    this.flushedUpTo = upTo;
    const live: string[] = [];
    if (!final) {
      live.push(`[+] Building ${fmt(Date.now() - this.started)} (${this.steps.filter((s) => s.state !== 'running').length}/${this.steps.length})`);
      for (let i = upTo; i < this.steps.length; i++) live.push(...this.line(this.steps[i]!));
    }
    text += live.map((l) => `${l}\n`).join('');
    this.drawn = live.length;
    this.out.write(text);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const s of this.steps) if (s.state === 'running') { s.state = 'error'; s.t1 = Date.now(); }
    this.draw(true);
    this.out.write(`[+] Built in ${fmt(Date.now() - this.started)}\n`);
  }
}

/** A progress display on `out` (stderr usually): live on a terminal, plain lines otherwise. */
export function createProgress(mode: ProgressMode, out: Writer): Progress {
  if (mode === 'quiet') return new QuietProgress();
  const tty = mode === 'tty' || (mode === 'auto' && !!out.isTTY && process.env.TERM !== 'dumb');
  return tty ? new TtyProgress(out) : new PlainProgress(out);
}
