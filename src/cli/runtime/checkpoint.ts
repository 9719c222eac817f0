// `keel checkpoint` and `keel restore`: runc's flags, with criu doing the work (runtime/checkpoint.ts).
import { Command, Option } from 'clipanion';
import { KeelCommand, intOption } from '../common.js';
import { globals, writeLog } from './globals.js';

function context() {
  return { root: globals.root, systemdCgroup: globals.systemdCgroup, criu: globals.criu, warn: (m: string) => writeLog('warning', m) };
}

/** The flags both commands take. */
abstract class CriuFlagsCommand extends KeelCommand {
  imagePath = Option.String('--image-path', { description: 'path of the criu image files (default ./checkpoint)' });
  workPath = Option.String('--work-path', { description: 'path for criu\'s work files and log (default the image path)' });
  tcpEstablished = Option.Boolean('--tcp-established', false, { description: 'allow open tcp connections' });
  extUnixSk = Option.Boolean('--ext-unix-sk', false, { description: 'allow external unix sockets' });
  shellJob = Option.Boolean('--shell-job', false, { description: 'allow shell jobs' });
  fileLocks = Option.Boolean('--file-locks', false, { description: 'handle file locks' });
  manageCgroupsMode = Option.String('--manage-cgroups-mode', { description: 'cgroups mode: soft|full|strict|ignore (default: soft)' });
  emptyNs = Option.Array('--empty-ns', { description: 'create a namespace but do not restore its properties (network)' });
  autoDedup = Option.Boolean('--auto-dedup', false, { description: 'enable auto deduplication of memory images' });
  lazyPages = Option.Boolean('--lazy-pages', false, { description: 'use userfaultfd to restore memory pages lazily' });

  criuFlags() {
    return {
      imagePath: this.imagePath, workPath: this.workPath, tcpEstablished: this.tcpEstablished, extUnixSk: this.extUnixSk,
      shellJob: this.shellJob, fileLocks: this.fileLocks, manageCgroupsMode: this.manageCgroupsMode, emptyNs: this.emptyNs,
      autoDedup: this.autoDedup, lazyPages: this.lazyPages,
    };
  }
}

export class CheckpointCommand extends CriuFlagsCommand {
  static override paths = [['checkpoint']];
  static override usage = Command.Usage({ description: 'checkpoint a running container with criu' });
  parentPath = Option.String('--parent-path', { description: 'path of the previous (pre-)dump, relative to --image-path' });
  leaveRunning = Option.Boolean('--leave-running', false, { description: 'leave the container running after checkpointing' });
  tcpSkipInFlight = Option.Boolean('--tcp-skip-in-flight', false, { description: 'skip in-flight tcp connections' });
  linkRemap = Option.Boolean('--link-remap', false, { description: 'allow linking unlinked files back when possible' });
  statusFd = Option.String('--status-fd', { description: 'with --lazy-pages: criu writes \\0 to this fd once it is ready' });
  pageServer = Option.String('--page-server', { description: 'ADDRESS:PORT of a criu page server' });
  preDump = Option.Boolean('--pre-dump', false, { description: 'dump the memory only and leave the container running' });
  id = Option.String();
  async run() {
    const { checkpoint } = await import('../../runtime/checkpoint.js');
    await checkpoint(context(), this.id, {
      ...this.criuFlags(), parentPath: this.parentPath, leaveRunning: this.leaveRunning, tcpSkipInFlight: this.tcpSkipInFlight,
      linkRemap: this.linkRemap, statusFd: intOption(this.statusFd, '--status-fd'), pageServer: this.pageServer, preDump: this.preDump,
    });
  }
}

export class RestoreCommand extends CriuFlagsCommand {
  static override paths = [['restore']];
  static override usage = Command.Usage({ description: 'restore a container from a criu checkpoint' });
  bundle = Option.String('-b,--bundle', { description: 'path to the root of the bundle directory (default: current directory)' });
  detach = Option.Boolean('-d,--detach', false, { description: 'detach from the container\'s process' });
  pidFile = Option.String('--pid-file', { description: 'file to write the process id to' });
  consoleSocket = Option.String('--console-socket', { description: 'unix socket that receives the pty master when process.terminal is true' });
  noPivot = Option.Boolean('--no-pivot', false, { description: 'accepted as runc does (criu restores the root as it was)' });
  noSubreaper = Option.Boolean('--no-subreaper', false, { description: 'accepted as runc does' });
  lsmProfile = Option.String('--lsm-profile', { description: 'LSM profile of the restored processes (TYPE:NAME)' });
  lsmMountContext = Option.String('--lsm-mount-context', { description: 'LSM mount context for the restored mounts' });
  id = Option.String();
  async run() {
    const { restore } = await import('../../runtime/checkpoint.js');
    return restore(context(), this.id, {
      ...this.criuFlags(), bundle: this.bundle, detach: this.detach, pidFile: this.pidFile, consoleSocket: this.consoleSocket,
      noPivot: this.noPivot, lsmProfile: this.lsmProfile, lsmMountContext: this.lsmMountContext,
    });
  }
}
