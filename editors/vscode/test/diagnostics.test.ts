import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  commandErrorOf,
  countBroken,
  isMarkdownUri,
  pickRuleId,
  resumeCommandOf,
  rewindResultText,
  statusText,
  type DiagnosticLike,
} from '../src/diagnostics';

const ERROR = 0;
const WARNING = 1;

function diag(line: number, code: DiagnosticLike['code'], severity = ERROR, source = 'rewind-lsp'): DiagnosticLike {
  return { source, code, severity, range: { start: { line, character: 2 }, end: { line, character: 40 } } };
}

test('broken sessions and logs are counted apart, a subagent transcript under its session', () => {
  const entries = [
    ['file:///p/a.jsonl', [diag(1, 'orphan-tool-use'), diag(4, 'orphan-tool-result')]],
    ['file:///p/a/subagents/agent-1.jsonl', [diag(2, 'orphan-tool-use')]],
    ['file:///p/b.jsonl', [diag(1, 'malformed-line', WARNING)]],
    ['file:///c.ts', [diag(1, 'ts2304', ERROR, 'ts')]],
    ['file:///terminal-1.log', [diag(0, 'tool-use-concurrency-400')]],
  ] as const;
  assert.deepEqual(countBroken(entries, ERROR), { sessions: 1, logs: 1 });
  assert.deepEqual(countBroken([], ERROR), { sessions: 0, logs: 0 });
});

test('status text names sessions and logs apart, pluralised', () => {
  assert.equal(statusText({ sessions: 0, logs: 0 }), '$(check) rewind-lsp');
  assert.equal(statusText({ sessions: 1, logs: 0 }), '$(error) 1 broken session');
  assert.equal(statusText({ sessions: 3, logs: 0 }), '$(error) 3 broken sessions');
  assert.equal(statusText({ sessions: 1, logs: 1 }), '$(error) 1 broken session, 1 log with the 400');
  assert.equal(statusText({ sessions: 0, logs: 2 }), '$(error) 2 logs with the 400');
});

test('status text says when the server is not running, and why, with no check mark', () => {
  assert.equal(statusText({ sessions: 0, logs: 0 }, 'command not found'), '$(error) rewind-lsp not running: command not found');
  assert.equal(statusText({ sessions: 2, logs: 0 }, 'failed to start'), '$(error) rewind-lsp not running: failed to start');
});

test('the Rewind/Repair toast names the new file and the resume command', () => {
  const result = { path: '/p/-tmp-demo/abc.jsonl', sessionId: 'abc', resumeCommand: 'claude --resume abc' };
  assert.equal(rewindResultText(result), 'rewind-lsp: wrote abc.jsonl; resume it with: claude --resume abc');
  assert.equal(rewindResultText({ resumeCommand: 'claude --resume abc' }), 'rewind-lsp: wrote a new session; resume it with: claude --resume abc');
  assert.equal(rewindResultText({ error: 'rewind-lsp: not a regular file' }), undefined);
});

test('fix pages (Markdown) are recognised for the rendered preview', () => {
  assert.equal(isMarkdownUri('file:///repo/rules/tool-pairing.md'), true);
  assert.equal(isMarkdownUri('file:///repo/rules/tool-pairing.md#fix'), true);
  assert.equal(isMarkdownUri('file:///p/abc.jsonl'), false);
});

test('the rule under the cursor wins, else the first in the file', () => {
  const diagnostics = [diag(5, 'orphan-tool-result'), diag(1, { value: 'orphan-tool-use' }), diag(3, 'ts1', ERROR, 'ts')];
  assert.equal(pickRuleId(diagnostics, { line: 5, character: 10 }), 'orphan-tool-result');
  assert.equal(pickRuleId(diagnostics, { line: 3, character: 10 }), 'orphan-tool-use');
  assert.equal(pickRuleId(diagnostics), 'orphan-tool-use');
  assert.equal(pickRuleId([diag(1, 'ts1', ERROR, 'ts')]), undefined);
});

test('resume commands are read from command results', () => {
  assert.equal(resumeCommandOf({ path: '/x.jsonl', sessionId: 'abc', resumeCommand: 'claude --resume abc' }), 'claude --resume abc');
  assert.equal(resumeCommandOf({ resumeCommand: '' }), undefined);
  assert.equal(resumeCommandOf(null), undefined);
  assert.equal(resumeCommandOf('claude --resume abc'), undefined);
});

test('command errors are read from command results', () => {
  assert.equal(commandErrorOf({ error: 'rewind-lsp: unknown rule' }), 'rewind-lsp: unknown rule');
  assert.equal(commandErrorOf({ resumeCommand: 'claude --resume abc' }), undefined);
  assert.equal(commandErrorOf(undefined), undefined);
});
