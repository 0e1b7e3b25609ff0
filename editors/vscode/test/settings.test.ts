import assert from 'node:assert/strict';
import { test } from 'node:test';
import { documentPatterns, sectionToServerOptions, toServerOptions } from '../src/settings';

test('settings map to initializationOptions with the contract names', () => {
  const settings: Record<string, unknown> = {
    watchRoots: ['/tmp/claude/projects'],
    logGlobs: ['*.log', 'claude-*.txt'],
    ruleDirs: ['/rules'],
    disabledRules: ['malformed-line'],
    severity: { 'orphan-tool-use': 'warning' },
    notifications: false,
  };
  assert.deepEqual(toServerOptions((key) => settings[key]), settings);
});

test('unset and null settings are left to the server default', () => {
  const settings: Record<string, unknown> = { watchRoots: null, logGlobs: ['*.log'] };
  assert.deepEqual(toServerOptions((key) => settings[key]), { logGlobs: ['*.log'] });
});

test('ill-typed settings are dropped, unknown severities filtered out', () => {
  const settings: Record<string, unknown> = {
    watchRoots: '/not/a/list',
    ruleDirs: ['/ok', 3],
    severity: { 'orphan-tool-use': 'error', 'malformed-line': 'fatal' },
    notifications: 'yes',
  };
  assert.deepEqual(toServerOptions((key) => settings[key]), { severity: { 'orphan-tool-use': 'error' } });
});

test('a whole settings section drops client-only keys such as server.command', () => {
  const section = { server: { command: ['rewind-lsp', 'serve'] }, trace: { server: 'off' }, watchRoots: null, notifications: true };
  assert.deepEqual(sectionToServerOptions(section), { notifications: true });
  assert.deepEqual(sectionToServerOptions(null), {});
});

test('document patterns cover transcripts, logs and extra log globs once', () => {
  assert.deepEqual(documentPatterns(), ['**/*.jsonl', '**/*.log']);
  assert.deepEqual(documentPatterns(['*.log', 'claude-*.txt', '/var/log/claude/*.out', ' ']), [
    '**/*.jsonl',
    '**/*.log',
    '**/claude-*.txt',
    '/var/log/claude/*.out',
  ]);
});
