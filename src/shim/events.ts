// Task events to containerd: each is an Envelope {timestamp, namespace, topic, event} forwarded over
// ttrpc to containerd's events service (containerd.services.events.ttrpc.v1.Events/Forward) at the
// address containerd gives its shims in TTRPC_ADDRESS. Events go in order, one at a time; a failed
// send reconnects and tries again a few times, as containerd's own shim publisher does.
import { connect } from 'node:net';
import { create, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { AnySchema, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { ForwardRequestSchema } from './generated/services/ttrpc/events/v1/events_pb.js';
import { TtrpcClient } from './ttrpc.js';

/** containerd's ttrpc metadata key for the namespace of a call. */
export const NAMESPACE_KEY = 'containerd-namespace-ttrpc';

/**
 * A message packed in an Any the way containerd's typeurl does for its protobuf types: the type
 * URL is the message's full name alone (containerd.events.TaskExit), not type.googleapis.com/...
 */
export function packAny<D extends DescMessage>(schema: D, msg: MessageShape<D>) {
  return create(AnySchema, { typeUrl: schema.typeName, value: toBinary(schema, msg) });
}

export class Publisher {
  private client: TtrpcClient | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly address: string, private readonly namespace: string, private readonly log: (msg: string) => void) {}

  private connection(): Promise<TtrpcClient> {
    if (this.client) return Promise.resolve(this.client);
    const path = this.address.replace(/^unix:\/\//, '');
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      sock.once('connect', () => {
        const client = new TtrpcClient(sock);
        sock.on('close', () => { if (this.client === client) this.client = undefined; });
        sock.unref(); // events never keep the shim alive on their own
        this.client = client;
        resolve(client);
      });
      sock.once('error', reject);
    });
  }

  /** Queues an event for `topic` (/tasks/exit ...). */
  publish<D extends DescMessage>(topic: string, schema: D, event: MessageShape<D>): Promise<void> {
    const req = create(ForwardRequestSchema, {
      envelope: { timestamp: timestampFromDate(new Date()), namespace: this.namespace, topic, event: packAny(schema, event) },
    });
    const payload = toBinary(ForwardRequestSchema, req);
    this.queue = this.queue.then(() => this.send(topic, payload));
    return this.queue;
  }

  private async send(topic: string, payload: Uint8Array): Promise<void> {
    if (!this.address) return;
    for (let attempt = 1; ; attempt++) {
      try {
        const client = await this.connection();
        await client.call('containerd.services.events.ttrpc.v1.Events', 'Forward', payload, { [NAMESPACE_KEY]: this.namespace }, 5000);
        return;
      } catch (err) {
        this.client?.close();
        this.client = undefined;
        if (attempt >= 5) { this.log(`publish ${topic}: ${(err as Error).message}`); return; }
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }

  /** Resolves once every queued event is sent (or given up). */
  flush(): Promise<void> { return this.queue; }
}
