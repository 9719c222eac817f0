// The Kubernetes path: containerd's CRI plugin with a runtime handler `keel`
// (runtime_type io.containerd.keel.v2), driven over gRPC exactly as the kubelet drives it, with
// CRI's own api.proto (spec/cri-api) and @grpc/grpc-js. A pod of two containers runs in one shim.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { create, fromBinary, toBinary, type DescMethodUnary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { Containerd, containerdSkip, IMAGE } from './containerd-env.js';

const skip = containerdSkip();
const cd = new Containerd({ cri: true });
let startSkip: string | false = false;
let grpc: typeof import('@grpc/grpc-js') | undefined;
let client: import('@grpc/grpc-js').Client | undefined;
let cri: typeof import('../../src/shim/generated/runtime/v1/api_pb.js');

/** One unary call of a CRI method, encoded and decoded by the generated types. */
function call<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, req: MessageInitShape<I>): Promise<MessageShape<O>> {
  return new Promise((resolve, reject) => {
    client!.makeUnaryRequest(`/${method.parent.typeName}/${method.name}`,
      (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
      (b: Buffer) => fromBinary(method.output, b),
      create(method.input, req), { deadline: Date.now() + 60_000 },
      (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

function shimsInK8sNamespace(): number[] {
  return spawnSync('pgrep', ['-f', 'containerd-shim-keel-v2-daemon -namespace k8s.io '], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
}

before(async () => {
  if (skip) return;
  startSkip = await cd.start();
  if (startSkip) return;
  await cd.importImage('k8s.io');
  grpc = await import('@grpc/grpc-js');
  cri = await import('../../src/shim/generated/runtime/v1/api_pb.js');
  client = new grpc.Client(`unix://${cd.sock}`, grpc.credentials.createInsecure());
});

after(async () => {
  client?.close();
  if (!skip) await cd.cleanup();
});

test('a pod of two containers through the CRI API: run, exec, stats, stop, remove; one shim serves the pod', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  const R = cri.RuntimeService.method;
  const version = await call(R.version, {});
  assert.equal(version.runtimeName, 'containerd');
  const shimsBefore = shimsInK8sNamespace().length;
  const logs = join(cd.dir, 'pod-logs');
  mkdirSync(logs);
  const sandboxConfig: MessageInitShape<typeof cri.PodSandboxConfigSchema> = {
    metadata: { name: 'keel-pod', uid: `uid-${process.pid}`, namespace: 'default', attempt: 0 },
    // No hostname: the kubelet sets none for a pod on the host's network (no uts namespace of its own).
    logDirectory: logs,
    linux: {
      cgroupParent: `/keel-cri-${process.pid}`,
      // No CNI here: the pod uses the host's network.
      securityContext: { namespaceOptions: { network: cri.NamespaceMode.NODE } },
    },
  };
  const { podSandboxId } = await call(R.runPodSandbox, { config: sandboxConfig, runtimeHandler: 'keel' });
  assert.ok(podSandboxId);
  const ids: string[] = [];
  for (const name of ['first', 'second']) {
    const { containerId } = await call(R.createContainer, {
      podSandboxId, sandboxConfig,
      config: { metadata: { name }, image: { image: IMAGE }, command: ['sleep', '100000'], logPath: `${name}.log` },
    });
    await call(R.startContainer, { containerId });
    ids.push(containerId);
  }
  const listed = await call(R.listContainers, { filter: { podSandboxId } });
  assert.deepEqual(listed.containers.map((c) => c.state).sort(), [cri.ContainerState.CONTAINER_RUNNING, cri.ContainerState.CONTAINER_RUNNING]);
  assert.equal(shimsInK8sNamespace().length, shimsBefore + 1, 'the sandbox and both containers share one shim');

  // The containers share the pod's pid namespace (CRI's default): pid 1 is the sandbox's process.
  const ex = await call(R.execSync, { containerId: ids[1]!, cmd: ['sh', '-c', 'echo hello from $(cat /proc/1/cmdline | tr "\\0" " "); echo oops >&2; exit 3'], timeout: 30n });
  assert.equal(Buffer.from(ex.stdout).toString(), 'hello from sleep 2147483647\n');
  assert.equal(Buffer.from(ex.stderr).toString(), 'oops\n');
  assert.equal(ex.exitCode, 3);

  const { stats } = await call(R.containerStats, { containerId: ids[0]! });
  assert.ok((stats?.memory?.workingSetBytes?.value ?? 0n) > 0n || (stats?.memory?.usageBytes?.value ?? 0n) > 0n, 'memory statistics from the shim');
  assert.ok((stats?.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n, 'cpu statistics from the shim');

  for (const containerId of ids) {
    await call(R.stopContainer, { containerId, timeout: 1n });
    const { status } = await call(R.containerStatus, { containerId });
    assert.equal(status?.state, cri.ContainerState.CONTAINER_EXITED);
    assert.equal(status?.exitCode, 143); // SIGTERM: in the pod's pid namespace, sleep is not its pid 1
    await call(R.removeContainer, { containerId });
  }
  await call(R.stopPodSandbox, { podSandboxId });
  await call(R.removePodSandbox, { podSandboxId });
  const deadline = Date.now() + 10_000;
  while (shimsInK8sNamespace().length > shimsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(shimsInK8sNamespace().length, shimsBefore, 'the pod\'s shim exits with its last container');
  const left = existsSync('/run/containerd/keel/k8s.io') ? readdirSync('/run/containerd/keel/k8s.io').filter((d) => [podSandboxId, ...ids].includes(d)) : [];
  assert.deepEqual(left, [], 'keel keeps no state of the pod');
});
