/**
 * POSIX ACLs as tar archives carry them (`SCHILY.acl.access` / `SCHILY.acl.default`: the text form
 * GNU tar and star write, entries separated by newlines or commas) turned into the
 * `system.posix_acl_access` / `system.posix_acl_default` xattr values the kernel takes.
 *
 * Named users and groups are resolved with the caller's lookup (the image's own /etc/passwd and
 * /etc/group: the names an ACL in an image means are the image's). star's `:ID` suffix wins.
 */

const TAGS: Record<string, number> = { user: 0x01, u: 0x01, group: 0x04, g: 0x04, mask: 0x10, m: 0x10, other: 0x20, o: 0x20 };
const USER = 0x02, GROUP = 0x08;
const UNDEFINED_ID = 0xffffffff;

export type IdLookup = (kind: 'user' | 'group', name: string) => number | undefined;

/** The entries' named users and groups, to know whether a lookup is needed. */
export function aclNames(text: string): boolean {
  return text.split(/[\n,]/).some((e) => {
    const f = e.trim().split(':');
    return f.length >= 3 && f[1] !== '' && !/^\d+$/.test(f[1]!) && !(f[3] && /^\d+$/.test(f[3]));
  });
}

/**
 * The xattr value for an ACL in text form, or a string saying why it cannot be made (an
 * unknown tag or permission, a name the lookup does not know).
 */
export function encodeAcl(text: string, lookup: IdLookup): Buffer | string {
  const entries: [number, number, number][] = [];
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const f = line.split(':');
    if (f.length < 3 || f.length > 4) return `malformed ACL entry ${JSON.stringify(line)}`;
    const [tagName, qualifier, permText, idText] = f as [string, string, string, string | undefined];
    let tag = TAGS[tagName];
    if (tag === undefined) return `unknown ACL tag ${JSON.stringify(tagName)}`;
    if (!/^[rwx-]{1,3}$/.test(permText)) return `invalid ACL permissions ${JSON.stringify(permText)}`;
    const perm = (permText.includes('r') ? 4 : 0) | (permText.includes('w') ? 2 : 0) | (permText.includes('x') ? 1 : 0);
    let id = UNDEFINED_ID;
    if (qualifier !== '') {
      if (tag !== 0x01 && tag !== 0x04) return `ACL ${tagName} entry with a qualifier`;
      const kind = tag === 0x01 ? 'user' : 'group';
      tag = tag === 0x01 ? USER : GROUP;
      const known = idText !== undefined && /^\d+$/.test(idText) ? Number(idText) : /^\d+$/.test(qualifier) ? Number(qualifier) : lookup(kind, qualifier);
      if (known === undefined || known >= UNDEFINED_ID) return `ACL names ${kind} ${JSON.stringify(qualifier)}, which the image does not have`;
      id = known;
    }
    entries.push([tag, perm, id]);
  }
  entries.sort((a, b) => a[0] - b[0] || a[2] - b[2]);
  const out = Buffer.alloc(4 + 8 * entries.length);
  out.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    out.writeUInt16LE(tag, 4 + 8 * i);
    out.writeUInt16LE(perm, 6 + 8 * i);
    out.writeUInt32LE(id, 8 + 8 * i);
  });
  return out;
}
