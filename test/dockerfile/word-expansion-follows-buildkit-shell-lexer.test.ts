// Word expansion as BuildKit's shell lexer does it: every substitution form, quotes, escapes, the
// escape directive, word splitting, lexer options, and the errors BuildKit reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { processWord, processWords, expandWord, ExpansionError } from '../../src/dockerfile/index.js';
import { KeelError } from '../../src/util/errors.js';
import { mulberry32 } from './prng.js';

const env = {
  PWD: '/home', SHELL: 'bash', KOREAN: '한국어', NULL: '', FOO: 'foobarbaz', A: 'a b', PATHV: '/usr/local/bin:/usr/bin',
  STARS: 'a*b*c', URL: 'http://example.com/x', TABS: 'x\ty',
};

const wordCases: [string, string][] = [
  ['hello', 'hello'],
  ['$PWD', '/home'],
  ['${PWD}', '/home'],
  ['${PWD}x', '/homex'],
  ['$PWDx', ''],
  ['he$PWD', 'he/home'],
  ['$PWD/$SHELL', '/home/bash'],
  ['\\$PWD', '$PWD'],
  ['\\${PWD}', '${PWD}'],
  ["'$PWD'", '$PWD'],
  ['"$PWD"', '/home'],
  ['"\\$PWD"', '$PWD'],
  ['"a\\b"', 'a\\b'],
  ['"a\\"b"', 'a"b'],
  ['"a\\\\b"', 'a\\b'],
  ["\"it's\"", "it's"],
  ["'say \"hi\"'", 'say "hi"'],
  ['a\\ b', 'a b'],
  ['a\\', 'a'],
  ['\\\\', '\\'],
  ['$', '$'],
  ['a$', 'a$'],
  ['$1', ''],
  ['$$', ''],
  ['$@x', 'x'],
  ['${KOREAN}', '한국어'],
  ['$KOREAN!', '한국어!'],
  ['${UNSET:-default}', 'default'],
  ['${NULL:-default}', 'default'],
  ['${NULL-default}', ''],
  ['${UNSET-default}', 'default'],
  ['${PWD:-default}', '/home'],
  ['${PWD-default}', '/home'],
  ['${PWD:+alt}', 'alt'],
  ['${NULL:+alt}', ''],
  ['${NULL+alt}', 'alt'],
  ['${UNSET+alt}', ''],
  ['${UNSET:+alt}', ''],
  ['${UNSET:-$PWD}', '/home'],
  ['${UNSET:-${SHELL:-x}}', 'bash'],
  ['${UNSET:-"a b"}', 'a b'],
  ["${UNSET:-'$PWD'}", '$PWD'],
  ['${PWD:?}', '/home'],
  ['${NULL?}', ''],
  ['${FOO#foo}', 'barbaz'],
  ['${FOO#*a}', 'rbaz'],
  ['${FOO##*a}', 'z'],
  ['${FOO#f*b}', 'arbaz'],
  ['${FOO##f*b}', 'az'],
  ['${FOO#x}', 'foobarbaz'],
  ['${FOO#}', 'foobarbaz'],
  ['${FOO%baz}', 'foobar'],
  ['${FOO%b*}', 'foobar'],
  ['${FOO%%b*}', 'foo'],
  ['${FOO%a*}', 'foobarb'],
  ['${FOO%%a*}', 'foob'],
  ['${FOO%?}', 'foobarba'],
  ['${FOO/ba/fo}', 'fooforbaz'],
  ['${FOO//ba/fo}', 'fooforfoz'],
  ['${FOO/b*/X}', 'fooX'],
  ['${FOO/?/X}', 'Xoobarbaz'],
  ['${FOO//o/}', 'fbarbaz'],
  ['${FOO//x/y}', 'foobarbaz'],
  ['${UNSET/a/b}', ''],
  ['${PATHV//:/ }', '/usr/local/bin /usr/bin'],
  ['${URL/http:\\/\\//https://}', 'https://example.com/x'],
  ['${STARS#*\\*}', 'b*c'],
  ['${STARS##*\\*}', 'c'],
  ['${STARS%\\**}', 'a*b'],
  ['${STARS//\\*/-}', 'a-b-c'],
  ['${TABS}', 'x\ty'],
  ['pre-${SHELL:+[$SHELL]}-post', 'pre-[bash]-post'],
  ['${FOO//*/x}', 'x'],
];

test('processWord expands every substitution form as BuildKit does', () => {
  for (const [input, want] of wordCases) {
    assert.equal(processWord(input, env), want, `processWord(${JSON.stringify(input)})`);
  }
});

test('processWord accepts a Map, KEY=VALUE strings (later ones win) and a lookup function', () => {
  assert.equal(processWord('$X-$Y', new Map([['X', '1'], ['Y', '2']])), '1-2');
  assert.equal(processWord('$X-$Y', ['X=1', 'Y=2', 'X=3', 'Y']), '3-');
  assert.equal(processWord('${Y-unset}', ['Y']), '');
  assert.equal(processWord('$X', (n) => (n === 'X' ? 'fn' : undefined)), 'fn');
});

const wordsCases: [string, string[]][] = [
  ['a b  c', ['a', 'b', 'c']],
  ['"a b" c', ['a b', 'c']],
  ["'a b'c", ['a bc']],
  ['$A', ['a', 'b']],
  ['"$A"', ['a b']],
  ['x$A', ['xa', 'b']],
  ['"" a', ['a']],
  ["''", []],
  ['a "" b', ['a', 'b']],
  ['a\\ b', ['a b']],
  ['  ', []],
  ['<<  EOF', ['<<  EOF']],
  ['$UNSET a', ['a']],
  ['80 ${PORTS}', ['80', '443', '8080']],
  ['"${PORTS}"', ['443 8080']],
];

test('processWords splits on unquoted whitespace, including whitespace from variables', () => {
  for (const [input, want] of wordsCases) {
    assert.deepEqual(processWords(input, { ...env, PORTS: '443 8080' }), want, `processWords(${JSON.stringify(input)})`);
  }
});

const errorCases: [string, string][] = [
  ['"abc', 'failed to process "\\"abc": unexpected end of statement while looking for matching double-quote'],
  ["'abc", `failed to process "'abc": unexpected end of statement while looking for matching single-quote`],
  ['"abc\\', 'failed to process "\\"abc\\\\": unexpected end of statement while looking for matching double-quote'],
  ['${', `failed to process "\${": syntax error: missing '}'`],
  ['${}', 'failed to process "${}": syntax error: bad substitution'],
  ['${:x}', 'failed to process "${:x}": syntax error: bad substitution'],
  ['${{x}}', 'failed to process "${{x}}": syntax error: bad substitution'],
  ['${PWD', 'failed to process "${PWD": unsupported modifier (\ufffd) in substitution'],
  ['${PWD:-x', `failed to process "\${PWD:-x": syntax error: missing '}'`],
  ['${PWD:-"x}', `failed to process "\${PWD:-\\"x}": syntax error: missing '}'`],
  ['${UNSET:?must be set}', 'failed to process "${UNSET:?must be set}": UNSET: must be set'],
  ['${UNSET?}', 'failed to process "${UNSET?}": UNSET: is not allowed to be unset'],
  ['${UNSET:?}', 'failed to process "${UNSET:?}": UNSET: is not allowed to be unset'],
  ['${NULL:?}', 'failed to process "${NULL:?}": NULL: is not allowed to be empty'],
  ['${NULL:?set it, $SHELL}', 'failed to process "${NULL:?set it, $SHELL}": NULL: set it, bash'],
  ['${PWD!x}', 'failed to process "${PWD!x}": unsupported modifier (!) in substitution'],
  ['${PWD:x}', 'failed to process "${PWD:x}": unsupported modifier (:x) in substitution'],
  ['${PWD=x}', 'failed to process "${PWD=x}": unsupported modifier (=) in substitution'],
  ['${FOO/a}', `failed to process "\${FOO/a}": syntax error: missing '/' in \${}`],
  ['${FOO/a/b', `failed to process "\${FOO/a/b": syntax error: missing '}'`],
  ['${FOO#\\x}', "failed to process \"${FOO#\\\\x}\": invalid pattern (\\x) in substitution: invalid escape '\\x'"],
];

test('expansion errors are reported like BuildKit, as one-line KeelErrors', () => {
  for (const [input, want] of errorCases) {
    assert.throws(() => processWord(input, env), (err: unknown) => {
      assert.ok(err instanceof ExpansionError && err instanceof KeelError, `${input}: ${String(err)}`);
      assert.equal(err.message, want, `error of ${JSON.stringify(input)}`);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
  }
});

test('the escape directive character replaces the backslash in expansion', () => {
  const opts = { escapeToken: '`' };
  assert.equal(processWord('a`$PWD', env, opts), 'a$PWD');
  assert.equal(processWord('c:\\dir\\$SHELL', env, opts), 'c:\\dir\\bash');
  assert.equal(processWord('"x`"y"', env, opts), 'x"y');
  assert.deepEqual(processWords('a` b c', env, opts), ['a b', 'c']);
});

test('lexer options keep quotes, escapes, unset references, or skip quote processing', () => {
  assert.equal(processWord('$UNSET ${UNSET} ${UNSET:-x} ${UNSET/a/b} $PWD', env, { skipUnsetEnv: true }), '$UNSET ${UNSET} ${UNSET:-x} ${UNSET/a/b} /home');
  assert.equal(processWord(`"a" 'b'`, env, { rawQuotes: true }), `"a" 'b'`);
  assert.equal(processWord('a\\ b', env, { rawEscapes: true }), 'a\\ b');
  assert.equal(processWord(`echo "$PWD" '$PWD' \\$PWD`, env, { skipProcessQuotes: true }), `echo "/home" '/home' $PWD`);
});

test('expandWord reports which variables were set and which were not', () => {
  const r = expandWord('${FOO:-x} $UNSET ${NULL-y} $PWD', env);
  assert.deepEqual([...r.matched].sort(), ['FOO', 'NULL', 'PWD']);
  assert.deepEqual([...r.unmatched], ['UNSET']);
});

test('hostile patterns and deep nesting finish quickly with a result or a KeelError', () => {
  const long = 'a'.repeat(5000);
  const t0 = Date.now();
  assert.equal(processWord('${V#*a*a*a*a*a*a*a*a*a*a*a*b}', { V: long }), long);
  assert.equal(processWord('${V//a*a*a*a*a*b/x}', { V: long }), long);
  assert.ok(Date.now() - t0 < 3000, 'pattern matching must not backtrack exponentially');
  const deep = '${X:-'.repeat(5000) + 'y' + '}'.repeat(5000);
  assert.throws(() => processWord(deep, {}), (e: unknown) => e instanceof KeelError);
});

// ---- differential check against bash for the modifiers BuildKit takes from bash ----


test('pattern and default modifiers agree with bash on generated cases', (t) => {
  const bash = ['/bin/bash', '/usr/bin/bash'].find((p) => existsSync(p));
  if (!bash) {
    t.skip('bash not installed');
    return;
  }
  const rnd = mulberry32(20240601);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const str = (alphabet: string, max: number) => {
    let s = '';
    const n = Math.floor(rnd() * (max + 1));
    for (let i = 0; i < n; i++) s += pick([...alphabet]);
    return s;
  };
  const cases: { word: string; value: string | undefined }[] = [];
  for (let i = 0; i < 4000; i++) {
    const op = pick(['#', '##', '%', '%%', '/', '//', ':-', '-', ':+', '+']);
    const value = rnd() < 0.1 && !op.startsWith('/') && !op.startsWith('#') && !op.startsWith('%') ? undefined : str('abc', 8);
    let word: string;
    if (op === '/' || op === '//') {
      let pat = str('abc*?', 4);
      if (pat.replace(/\*/g, '') === '') pat = 'b' + pat; // patterns that can match "" differ on purpose
      if (value === '') continue;
      word = `\${v${op}${pat}/X}`;
    } else if (op.includes('-') || op.includes('+')) {
      word = `\${v${op}${str('xyz', 3)}}`;
    } else {
      word = `\${v${op}${str('abc*?', 4)}}`;
    }
    cases.push({ word, value });
  }
  const script = cases
    .map(({ word, value }) => (value === undefined ? 'unset v; ' : `v='${value}'; `) + `printf '%s\\n' "${word}"`)
    .join('\n');
  const out = execFileSync(bash, ['--norc', '--noprofile', '-s'], { input: script, encoding: 'utf8' }).split('\n');
  cases.forEach(({ word, value }, i) => {
    const got = processWord(word, value === undefined ? {} : { v: value });
    assert.equal(got, out[i], `${word} with v=${JSON.stringify(value)}: keel ${JSON.stringify(got)}, bash ${JSON.stringify(out[i])}`);
  });
});
