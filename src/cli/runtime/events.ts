// `keel events [--stats] [--interval 5s] ID`: statistics and OOM notices as runc's JSON lines.
import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { globals, writeLog, writeStdout } from './globals.js';

export class EventsCommand extends KeelCommand {
  static override paths = [['events']];
  static override usage = Command.Usage({
    description: 'display container events: OOM notices and cpu, memory, pids and I/O statistics',
    details: 'Prints one JSON object per line: `{"type":"stats","id":ID,"data":{...}}` every interval and `{"type":"oom","id":ID}` when the OOM killer acts in the container, until the container stops. With `--stats`, prints the statistics once and exits.',
  });
  interval = Option.String('--interval', '5s', { description: 'the statistics interval (a duration: 5s, 500ms, 1m)' });
  stats = Option.Boolean('--stats', false, { description: 'display the container\'s statistics once, then exit' });
  id = Option.String();
  async run() {
    const { events, parseDuration } = await import('../../runtime/index.js');
    const ctx = { root: globals.root, systemdCgroup: globals.systemdCgroup, warn: (m: string) => writeLog('warning', m) };
    const intervalMs = parseDuration(this.interval, '--interval');
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await events(ctx, this.id, { stats: this.stats, intervalMs, signal: abort.signal }, writeStdout);
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  }
}
