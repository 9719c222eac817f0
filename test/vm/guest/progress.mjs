// A test reporter for the guest's console: one "keel-vm: " line per finished test, which the host
// prints as progress while the full TAP goes to the results share.
export default async function* progress(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    if (event.data.details?.type === 'suite') continue;
    const ok = event.type === 'test:pass' ? (event.data.skip !== undefined ? 'skip' : 'ok') : 'FAIL';
    const ms = Math.round(event.data.details?.duration_ms ?? 0);
    yield `keel-vm: ${ok} ${event.data.name} (${ms} ms)\n`;
  }
}
