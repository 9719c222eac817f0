// unbzip2-stream ships no types: the one function keel uses.
declare module 'unbzip2-stream' {
  import type { Transform } from 'node:stream';
  export default function unbzip2(): Transform;
}
