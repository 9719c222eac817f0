// Test helper: the default seccomp profile of containers-common (podman, buildah, cri-o), as an
// engine turns it into an OCI linux.seccomp object for an amd64 container with podman's default
// capabilities. A real-world profile: ~470 names, argument rules, several architectures.
import { existsSync, readFileSync } from 'node:fs';
import type { LinuxSeccomp } from '../../src/runtime/seccomp/index.js';

export const CONTAINERS_PROFILE = '/usr/share/containers/seccomp.json';

const PODMAN_CAPS = new Set([
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_NET_BIND_SERVICE',
  'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_CHROOT',
]);

interface EngineRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: string }[] | null;
  includes?: { arches?: string[]; caps?: string[]; minKernel?: string };
  excludes?: { arches?: string[]; caps?: string[] };
}

export function containersDefaultProfile(arch = 'amd64', caps = PODMAN_CAPS): LinuxSeccomp | undefined {
  if (!existsSync(CONTAINERS_PROFILE)) return undefined;
  const doc = JSON.parse(readFileSync(CONTAINERS_PROFILE, 'utf8'));
  const archMap = (doc.archMap ?? []) as { architecture: string; subArchitectures: string[] }[];
  const main = arch === 'amd64' ? 'SCMP_ARCH_X86_64' : 'SCMP_ARCH_AARCH64';
  const entry = archMap.find((a) => a.architecture === main);
  const syscalls = (doc.syscalls as EngineRule[])
    .filter((r) => {
      const inc = r.includes ?? {};
      const exc = r.excludes ?? {};
      if (inc.arches && !inc.arches.includes(arch)) return false;
      if (inc.caps && !inc.caps.every((c) => caps.has(c))) return false;
      if (exc.arches?.includes(arch)) return false;
      if (exc.caps?.some((c) => caps.has(c))) return false;
      return true;
    })
    .map((r) => ({
      names: r.names,
      action: r.action,
      ...(r.errnoRet !== undefined ? { errnoRet: r.errnoRet } : {}),
      ...(r.args?.length ? { args: r.args } : {}),
    }));
  return {
    defaultAction: doc.defaultAction,
    ...(doc.defaultErrnoRet !== undefined ? { defaultErrnoRet: doc.defaultErrnoRet } : {}),
    architectures: entry ? [entry.architecture, ...entry.subArchitectures] : [main],
    syscalls,
  } as LinuxSeccomp;
}
