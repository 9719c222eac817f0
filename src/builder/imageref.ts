// Image references as Docker writes them: [registry[:port]/]path[:tag][@digest], with Docker Hub's
// defaults (docker.io, library/, :latest) filled in.
import { KeelError } from '../util/errors.js';

export interface ImageReference {
  /** Registry host[:port], e.g. docker.io, localhost:5000. */
  registry: string;
  /** Repository path, e.g. library/busybox. */
  repository: string;
  tag?: string;
  digest?: string;
}

const DEFAULT_REGISTRY = 'docker.io';
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$/;

/** Parses a reference; throws a KeelError naming it when malformed. */
export function parseReference(ref: string): ImageReference {
  const bad = (why: string): never => { throw new KeelError(`invalid image reference ${JSON.stringify(ref)}: ${why}`); };
  if (ref === '' || ref !== ref.trim()) bad('empty or surrounded by spaces');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) bad(`bad digest ${JSON.stringify(digest)}`);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`bad tag ${JSON.stringify(tag)}`);
  }
  let registry = DEFAULT_REGISTRY;
  const first = rest.indexOf('/');
  if (first >= 0) {
    const head = rest.slice(0, first);
    if (head.includes('.') || head.includes(':') || head === 'localhost' || head !== head.toLowerCase()) {
      registry = head;
      rest = rest.slice(first + 1);
    }
  }
  if (rest === '') bad('no repository');
  for (const c of rest.split('/')) if (!PATH_COMPONENT.test(c)) bad(`bad path component ${JSON.stringify(c)} (lower-case letters, digits and . _ - separators)`);
  let repository = rest;
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  if (!tag && !digest) tag = 'latest';
  return { registry, repository, tag, digest };
}

/** The short form Docker prints: busybox:latest, localhost:5000/app:1. */
export function familiarName(r: ImageReference): string {
  let name = r.registry === DEFAULT_REGISTRY ? r.repository.replace(/^library\//, '') : `${r.registry}/${r.repository}`;
  if (r.tag) name += `:${r.tag}`;
  if (r.digest) name += `@${r.digest}`;
  return name;
}

/** The full form: docker.io/library/busybox:latest. */
export function fullName(r: ImageReference): string {
  let name = `${r.registry}/${r.repository}`;
  if (r.tag) name += `:${r.tag}`;
  if (r.digest) name += `@${r.digest}`;
  return name;
}
