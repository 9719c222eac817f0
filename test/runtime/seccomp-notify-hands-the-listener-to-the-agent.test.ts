import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, tempDir, which, waitFor } from './helpers.js';

const keel = keelWithRoot();
after(() => keel.cleanup());

// A minimal seccomp agent: takes the listener fd and the container process state from the socket,
// then answers every notification with EACCES.
const AGENT = String.raw`
import socket, sys, json, fcntl, struct, os
path, out = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path); srv.listen(1)
open(out + '.ready', 'w').close()
conn, _ = srv.accept()
msg, fds, _, _ = socket.recv_fds(conn, 16384, 1)
json.dump({'state': json.loads(msg), 'fds': len(fds)}, open(out, 'w'))
fd = fds[0]
RECV, SEND = 0xc0502100, 0xc0182101
while True:
    buf = bytearray(80)
    try:
        fcntl.ioctl(fd, RECV, buf)
    except OSError:
        break
    nid = struct.unpack_from('Q', buf, 0)[0]
    fcntl.ioctl(fd, SEND, bytearray(struct.pack('QqiI', nid, 0, -13, 0)))
`;
import { killAtExit } from '../fixtures/cleanup.js';

test('SCMP_ACT_NOTIFY: the agent at listenerPath gets the listener fd and the process state, and answers for the kernel', { skip: canRunContainers ? (which('python3') ? false : 'python3 not installed') : skipReason }, async () => {
  const dir = tempDir();
  const sock = join(dir, 'agent.sock');
  const out = join(dir, 'agent.json');
  writeFileSync(join(dir, 'agent.py'), AGENT);
  const agent = killAtExit(spawn('python3', [join(dir, 'agent.py'), sock, out], { stdio: 'inherit' }));
  try {
    assert.ok(waitFor(() => existsSync(out + '.ready'), 10_000), 'the agent listens');
    const bundle = makeBundle(['sh', '-c', 'mkdir /tmp/x 2>&1; echo rc=$?'], (c) => {
      c.mounts.push({ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] });
      c.linux.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW', listenerPath: sock, listenerMetadata: 'keel-test',
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_NOTIFY' }],
      };
    });
    const r = keel(['run', '-b', bundle, 'notify1']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Permission denied/, 'the agent\'s answer (EACCES) is what mkdir got');
    assert.match(r.stdout, /rc=1/);
    const got = JSON.parse(readFileSync(out, 'utf8'));
    assert.equal(got.fds, 1);
    assert.deepEqual(got.state.fds, ['seccompFd']);
    assert.equal(got.state.metadata, 'keel-test');
    assert.equal(got.state.state.id, 'notify1');
    assert.equal(got.state.state.status, 'creating');
    assert.equal(got.state.state.pid, got.state.pid);
    assert.ok(got.state.pid > 0);
  } finally {
    agent.kill();
  }
});
