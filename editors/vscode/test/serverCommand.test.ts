import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { DEFAULT_COMMAND, findOnPath, isExecutableFile, resolveServerCommand } from '../src/serverCommand';

let dir: string;
let exe: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rewind-lsp-cmd-'));
  exe = path.join(dir, 'rewind-lsp');
  fs.writeFileSync(exe, '#!/bin/sh\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'not-executable'), '', { mode: 0o644 });
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('the default command is found on PATH', () => {
  assert.deepEqual(resolveServerCommand(DEFAULT_COMMAND, { path: `/nonexistent${path.delimiter}${dir}` }), {
    ok: true,
    command: exe,
    args: ['serve'],
  });
});

test('a missing executable gives the install hint', () => {
  const result = resolveServerCommand(DEFAULT_COMMAND, { path: '/nonexistent' });
  assert.equal(result.ok, false);
  assert.ok(!result.ok);
  assert.equal(result.reason, 'command not found');
  assert.equal(
    result.message,
    'rewind-lsp: the language server `rewind-lsp` was not found on PATH. rewind-lsp is not on PyPI: install it from a clone ' +
      'with `pipx install /path/to/rewind-lsp` (or `pip install /path/to/rewind-lsp`), or run `./scripts/setup` in the clone ' +
      'and set `rewind-lsp.server.command` to its `.venv/bin/rewind-lsp`.',
  );
  assert.doesNotMatch(result.message, /pip install rewind-lsp/);
});

test('an absolute path is used as is, if executable', () => {
  assert.deepEqual(resolveServerCommand([exe, 'serve', '--tcp', '127.0.0.1:0'], { path: '' }), {
    ok: true,
    command: exe,
    args: ['serve', '--tcp', '127.0.0.1:0'],
  });
  const bad = resolveServerCommand([path.join(dir, 'not-executable'), 'serve'], { path: '' });
  assert.ok(!bad.ok);
  assert.equal(bad.reason, 'not an executable file');
  assert.match(bad.message, /is not an executable file\. rewind-lsp is not on PyPI/);
});

test('~, ${workspaceFolder} and relative paths are expanded', () => {
  const home = path.dirname(dir);
  const name = path.basename(dir);
  assert.deepEqual(resolveServerCommand([`~/${name}/rewind-lsp`, 'serve'], { home }), { ok: true, command: exe, args: ['serve'] });
  assert.deepEqual(resolveServerCommand(['${workspaceFolder}/rewind-lsp', 'serve', '${workspaceFolder}'], { workspaceFolder: dir }), {
    ok: true,
    command: exe,
    args: ['serve', dir],
  });
  assert.deepEqual(resolveServerCommand([`./${name}/rewind-lsp`], { workspaceFolder: home }), { ok: true, command: exe, args: [] });
});

test('an empty or ill-typed setting is an error, not a crash', () => {
  for (const configured of [[], [''], 'rewind-lsp serve', [1, 2], undefined]) {
    const result = resolveServerCommand(configured, { path: dir });
    assert.ok(!result.ok, JSON.stringify(configured));
    assert.match(result.message, /must be a non-empty list of strings/);
  }
});

test('PATHEXT extensions are tried (Windows lookups)', () => {
  const seen: string[] = [];
  const isExecutable = (file: string): boolean => {
    seen.push(file);
    return file.endsWith('rewind-lsp.EXE');
  };
  assert.equal(findOnPath('rewind-lsp', { path: 'C:\\py\\Scripts', pathExt: '.COM;.EXE', isExecutable }), path.join('C:\\py\\Scripts', 'rewind-lsp.EXE'));
  assert.equal(seen.length, 3);
});

test('isExecutableFile rejects folders and non-executable files', () => {
  assert.equal(isExecutableFile(exe), true);
  assert.equal(isExecutableFile(dir), false);
  assert.equal(isExecutableFile(path.join(dir, 'not-executable')), false);
  assert.equal(isExecutableFile(path.join(dir, 'missing')), false);
});
