// Linux capability names ↔ numbers (linux/capability.h) and the 64-bit masks capset() wants.
import { readFileSync } from 'node:fs';
import { KeelError } from '../util/errors.js';

/** Every capability Linux defines, in number order: CAPABILITIES[n] is the name of capability n. */
export const CAPABILITIES = [
  'CAP_CHOWN', // 0
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL', // 5
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE', // 10
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', // 15
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', // 20
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME', // 25
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL', // 30
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM', // 35
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE', // 40
] as const;

export type CapabilityName = (typeof CAPABILITIES)[number];

/** The highest capability number keel knows (CAP_CHECKPOINT_RESTORE). */
export const CAP_LAST_KNOWN = CAPABILITIES.length - 1;

const BY_NAME: ReadonlyMap<string, number> = new Map(CAPABILITIES.map((name, i) => [name, i]));

/** The number of a capability name such as "CAP_CHOWN", or undefined when unknown. */
export function capabilityNumber(name: string): number | undefined {
  return BY_NAME.get(name);
}

/** The name of capability number `n`, or undefined when unknown. */
export function capabilityName(n: number): CapabilityName | undefined {
  return CAPABILITIES[n];
}

let lastCapCache: number | undefined;

/**
 * The highest capability the running kernel supports (/proc/sys/kernel/cap_last_cap); falls back
 * to CAP_LAST_KNOWN where /proc does not tell.
 */
export function lastCap(): number {
  if (lastCapCache !== undefined) return lastCapCache;
  let value = CAP_LAST_KNOWN;
  try {
    const n = Number.parseInt(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim(), 10);
    if (Number.isInteger(n) && n >= 0 && n < 64) value = n;
  } catch {
    /* no /proc: assume every capability keel knows */
  }
  lastCapCache = value;
  return value;
}

export interface CapabilityMaskOptions {
  /**
   * Drop capabilities above this number (those the running kernel does not have), as runc does
   * (it ignores "unavailable" capabilities). Default: keep every known capability.
   */
  lastCap?: number;
  /** Called for each known capability dropped because it is above `lastCap`. */
  onUnavailable?: (name: string) => void;
}

/**
 * The capability bit mask for a list of names (e.g. process.capabilities.bounding).
 * An unknown name throws `unknown capability "CAP_FOO" in <fieldPath>`.
 */
export function capabilityMask(
  names: readonly string[] | undefined,
  fieldPath: string,
  options: CapabilityMaskOptions = {},
): bigint {
  let mask = 0n;
  for (const name of names ?? []) {
    const n = BY_NAME.get(name);
    if (n === undefined) throw new KeelError(`unknown capability ${JSON.stringify(name)} in ${fieldPath}`);
    if (options.lastCap !== undefined && n > options.lastCap) {
      options.onUnavailable?.(name);
      continue;
    }
    mask |= 1n << BigInt(n);
  }
  return mask;
}

/** The names of the capabilities set in `mask`, in number order (unknown bits as "CAP_<n>"). */
export function capabilityNames(mask: bigint): string[] {
  const out: string[] = [];
  for (let n = 0; n < 64; n++) {
    if ((mask >> BigInt(n)) & 1n) out.push(CAPABILITIES[n] ?? `CAP_${n}`);
  }
  return out;
}

/**
 * The two 32-bit words of a mask as capset(2) wants them with _LINUX_CAPABILITY_VERSION_3
 * (struct __user_cap_data_struct[0] holds bits 0-31, [1] bits 32-63).
 */
export function capabilityWords(mask: bigint): [number, number] {
  return [Number(mask & 0xffffffffn), Number((mask >> 32n) & 0xffffffffn)];
}
