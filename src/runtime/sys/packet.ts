/**
 * Kernel calls for talking to criu (`criu swrk`, checkpoint.ts): a SOCK_SEQPACKET socket pair
 * whose messages keep their boundaries (one protobuf message a packet), receiving a packet with
 * the descriptors it carries (SCM_RIGHTS: criu sends a restored pty's master that way), and
 * sending a descriptor to a console socket named by path (runc's --console-socket protocol).
 *
 * Loaded on first use with the shared koffi and libc handle. The msghdr layout is x86-64/aarch64's.
 * Failures throw an Error carrying `code` ('ECONNREFUSED'...) with the call and its object in the message.
 */
import { constants as osConstants } from 'node:os';
import { errnoError, koffiLibc } from './libc.js';

export interface PacketSys {
  /** A close-on-exec AF_UNIX SOCK_SEQPACKET pair. */
  seqpacketPair(): [number, number];
  /** Sends one packet (blocking). */
  send(fd: number, data: Uint8Array): void;
  /**
   * Receives one packet (blocking) of at most `max` bytes and the descriptors it carries
   * (close-on-exec); null at end of stream. A packet longer than `max` is an error.
   */
  receive(fd: number, max: number): { data: Buffer; fds: number[] } | null;
  /** Connects to the AF_UNIX stream socket at `path` and sends `fd` over it (SCM_RIGHTS) with `name` as data. */
  sendFdTo(path: string, fd: number, name: string): void;
  close(fd: number): void;
}

let cached: PacketSys | undefined;

export function packetSys(): PacketSys {
  if (cached) return cached;
  const { koffi, lib } = koffiLibc();
  const socketpair = lib.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)');
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const connect = lib.func('int connect(int fd, const uint8_t *addr, uint32_t len)');
  const sendmsg = lib.func('long sendmsg(int fd, void *msg, int flags)');
  const recvmsg = lib.func('long recvmsg(int fd, void *msg, int flags)');
  const write = lib.func('long write(int fd, const uint8_t *buf, size_t count)');
  const close = lib.func('int close(int fd)');
  const errno = () => koffi.errno() as number;
  const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_SEQPACKET = 5, SOCK_CLOEXEC = 0o2000000;
  const SOL_SOCKET = 1, SCM_RIGHTS = 1, MSG_CMSG_CLOEXEC = 0x40000000, MSG_TRUNC = 0x20, MSG_CTRUNC = 0x8;
  const EINTR = osConstants.errno.EINTR;
  const addr = (b: Buffer) => BigInt(koffi.address(b));

  /** struct msghdr with one iovec over `data` and a control buffer. */
  function msghdr(data: Buffer, control: Buffer): { msg: Buffer; keep: Buffer[] } {
    const iov = Buffer.alloc(16);
    iov.writeBigUInt64LE(addr(data), 0); iov.writeBigUInt64LE(BigInt(data.length), 8);
    const msg = Buffer.alloc(56);
    msg.writeBigUInt64LE(addr(iov), 16); msg.writeBigUInt64LE(1n, 24);
    if (control.length) { msg.writeBigUInt64LE(addr(control), 32); msg.writeBigUInt64LE(BigInt(control.length), 40); }
    return { msg, keep: [iov, data, control] };
  }

  cached = {
    seqpacketPair() {
      const sv = new Int32Array(2);
      if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) !== 0) throw errnoError('socketpair', 'SOCK_SEQPACKET', errno());
      return [sv[0]!, sv[1]!];
    },
    send(fd, data) {
      for (;;) {
        const n = Number(write(fd, data, data.length));
        if (n === data.length) return;
        if (n < 0 && errno() === EINTR) continue;
        throw errnoError('write', `packet of ${data.length} bytes`, n < 0 ? errno() : osConstants.errno.EMSGSIZE);
      }
    },
    receive(fd, max) {
      const data = Buffer.alloc(max);
      // Room for 8 descriptors: criu sends one.
      const control = Buffer.alloc(16 + 8 * 4);
      const { msg } = msghdr(data, control);
      let n: number;
      for (;;) {
        n = Number(recvmsg(fd, msg, MSG_CMSG_CLOEXEC));
        if (n >= 0 || errno() !== EINTR) break;
      }
      if (n < 0) throw errnoError('recvmsg', `fd ${fd}`, errno());
      const fds: number[] = [];
      const controlLen = Number(msg.readBigUInt64LE(40));
      for (let off = 0; off + 16 <= controlLen;) {
        const len = Number(control.readBigUInt64LE(off));
        if (len < 16) break;
        if (control.readInt32LE(off + 8) === SOL_SOCKET && control.readInt32LE(off + 12) === SCM_RIGHTS) {
          for (let p = off + 16; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
        }
        off += (len + 7) & ~7;
      }
      const flags = msg.readInt32LE(48);
      if (flags & (MSG_TRUNC | MSG_CTRUNC)) {
        for (const f of fds) close(f);
        throw errnoError('recvmsg', `a packet longer than ${max} bytes on fd ${fd}`, osConstants.errno.EMSGSIZE);
      }
      if (n === 0 && !fds.length) return null;
      return { data: data.subarray(0, n), fds };
    },
    sendFdTo(path, fd, name) {
      const sun = Buffer.from(path);
      if (sun.length >= 108) throw errnoError('connect', path, osConstants.errno.ENAMETOOLONG);
      const sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (sock < 0) throw errnoError('socket', path, errno());
      try {
        const sa = Buffer.alloc(110);
        sa.writeUInt16LE(AF_UNIX, 0);
        sun.copy(sa, 2);
        if (connect(sock, sa, 2 + sun.length + 1) !== 0) throw errnoError('connect', path, errno());
        const control = Buffer.alloc(24);
        control.writeBigUInt64LE(20n, 0); // CMSG_LEN(sizeof(int))
        control.writeInt32LE(SOL_SOCKET, 8);
        control.writeInt32LE(SCM_RIGHTS, 12);
        control.writeInt32LE(fd, 16);
        const { msg } = msghdr(Buffer.from(name || ' '), control);
        if (Number(sendmsg(sock, msg, 0)) < 0) throw errnoError('sendmsg', path, errno());
      } finally {
        close(sock);
      }
    },
    close(fd) { close(fd); },
  };
  return cached;
}
