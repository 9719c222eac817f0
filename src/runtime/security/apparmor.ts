// AppArmor: process.apparmorProfile is applied as runc (and libapparmor's aa_change_onexec) do, by
// writing "exec PROFILE" to the process's attr/apparmor/exec (attr/exec on kernels before 5.8)
// right before execve, so the profile takes effect on the container's program. A profile asked of
// a host without AppArmor is an error (runc and crun refuse too), never silently ignored.
import { existsSync, readFileSync } from 'node:fs';
import { KeelError } from '../../util/errors.js';
import type { Program } from '../native/program.js';
import { syscalls, O, AT_FDCWD } from '../linux/constants.js';

const ENOENT = 2;

/** Whether this host's kernel runs AppArmor (runc's IsEnabled: securityfs entry and the module flag). */
export function apparmorEnabled(): boolean {
  if (!existsSync('/sys/kernel/security/apparmor')) return false;
  try {
    return readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').startsWith('Y');
  } catch {
    return false;
  }
}

/**
 * Appends the steps that make the next execve enter `profile`. Throws when the host has no
 * AppArmor; `field` names the setting in the error.
 */
export function compileApparmorExec(p: Program, profile: string, field = 'process.apparmorProfile'): void {
  if (/[\0\n]/.test(profile)) throw new KeelError(`invalid AppArmor profile name ${JSON.stringify(profile)} in ${field}`);
  if (!apparmorEnabled()) {
    throw new KeelError(`cannot apply AppArmor profile ${JSON.stringify(profile)} (${field}): AppArmor is not enabled on this host`);
  }
  const S = syscalls();
  const fd = p.cell();
  const label = `apparmor-open-${p.length}`;
  p.sys(S.openat, [AT_FDCWD, p.cstr('/proc/thread-self/attr/apparmor/exec'), O.WRONLY | O.CLOEXEC, 0], {
    what: 'open /proc/thread-self/attr/apparmor/exec', store: fd, tolerate: ENOENT, onError: `${label}-old`, onOk: `${label}-write`,
  });
  p.label(`${label}-old`);
  p.sys(S.openat, [AT_FDCWD, p.cstr('/proc/thread-self/attr/exec'), O.WRONLY | O.CLOEXEC, 0], { what: 'open /proc/thread-self/attr/exec', store: fd });
  p.label(`${label}-write`);
  const text = Buffer.from(`exec ${profile}`);
  p.sys(S.write, [{ load: fd }, p.bytes(text), text.length], { what: `apply AppArmor profile ${JSON.stringify(profile)}` });
  p.sys(S.close, [{ load: fd }], { what: 'close' });
}
