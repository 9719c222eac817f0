/**
 * keel/runtime: a runc-compatible OCI runtime as a library.
 *
 *   create(ctx, id, { bundle, pidFile, consoleSocket, noPivot, preserveFds })  the init waits for start
 *   start(ctx, id)                 runs the user process
 *   state(ctx, id)                 runtime-spec state (+ rootfs, created, owner as runc)
 *   kill(ctx, id, signal, { all }) signal names (KILL, SIGKILL) or numbers
 *   remove(ctx, id, { force })     `delete`
 *   run(ctx, id, { ...create, detach, keep }) → exit code
 *   list(ctx)                      every container under ctx.root
 *   exec(ctx, id, { args | process, stdio, consoleSocket, detach, pidFile })
 *   checkpoint(ctx, id, { imagePath, leaveRunning, preDump ... })   criu dumps the container
 *   restore(ctx, id, { bundle, imagePath, detach ... })             criu restores it (runc's images)
 *
 * For programs that keep containers in-process (containerd's shim): watchExit(pid) (exit statuses
 * of the inits and exec'd processes this process created), consoleReceiver(path) (a console
 * socket receiving the pty master), resizeConsole, mountRootfs/unmountRootfs (an engine's mounts).
 *
 * `ctx` is `{ root: '/run/keel' }` (runc's --root). Containers are made by a native clone
 * trampoline (native/) running a syscall program compiled from config.json (init-program.ts).
 */
export { create, start, state, kill, remove, run, list, parseSignal, loadBundle, containerPids } from './container.js';
export type { RuntimeContext, CreateOptions, RunOptions, ContainerState, Status } from './container.js';
export { defaultSpec } from './spec-default.js';
export { checkId } from './state.js';
export { pause, resume, ps, psTable, stats, events, update, parseDuration, parseMemorySize, resourcesFromFlags, parseResourcesJson } from './operations.js';
export type { EventsOptions, UpdateFlags, LinuxResources } from './operations.js';
export { features } from './features.js';
export type { FeaturesOptions } from './features.js';
export { exec } from './exec.js';
export type { ExecOptions } from './exec.js';
export { checkpoint, restore } from './checkpoint.js';
export type { CriuContext, CheckpointOptions, RestoreOptions } from './checkpoint.js';
export { watchExit, openPipe, consoleReceiver, resizeConsole, mountRootfs, unmountRootfs } from './host.js';
export type { ProcessExit, ConsoleReceiver, HostMount } from './host.js';
