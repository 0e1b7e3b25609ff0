import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeEntry, entriesOf, healthOf, labelOf, sessionTree, tooltipOf, type SessionEntry } from '../src/sessions';

function entry(path: string, kind: SessionEntry['kind'], errors = 0, warnings = 0, line = 4): SessionEntry {
  return {
    uri: `file://${path}`,
    path,
    kind,
    sessionId: kind === 'log' ? null : (path.split('/').pop() ?? '').replace(/\.jsonl$/, ''),
    errors,
    warnings,
    firstError: errors > 0 ? { line, message: 'tool_use toolu_01RUN has no tool_result immediately after it' } : null,
  };
}

test('entriesOf keeps the well-formed entries and reads anything else as none', () => {
  const good = entry('/p/a.jsonl', 'session');
  assert.deepEqual(entriesOf({ sessions: [good, { uri: 3 }, null] }), [good]);
  assert.deepEqual(entriesOf(null), []);
  assert.deepEqual(entriesOf({ sessions: 'no' }), []);
  assert.deepEqual(entriesOf({ sessions: [{ ...good, firstError: undefined, warnings: undefined }] }), [{ ...good, warnings: 0 }]);
});

test('sessionTree puts a subagent transcript under its session and a session with a broken subagent first', () => {
  const healthy = entry('/p/aaaa.jsonl', 'session');
  const broken = entry('/p/bbbb.jsonl', 'session', 1);
  const agent = entry('/p/aaaa/subagents/agent-1.jsonl', 'subagent transcript', 2);
  const orphanAgent = entry('/p/cccc/subagents/agent-2.jsonl', 'subagent transcript');
  const log = entry('/logs/terminal.log', 'log');
  // The server's order: broken first, then by name.
  const tree = sessionTree([agent, broken, healthy, log, orphanAgent]);
  assert.deepEqual(
    tree.map((n) => [labelOf(n.entry), n.children.map((c) => labelOf(c.entry))]),
    [
      ['bbbb.jsonl', []],
      ['aaaa.jsonl', ['agent-1.jsonl']],
      ['terminal.log', []],
      ['agent-2.jsonl', []],
    ],
  );
});

test('labelOf shortens a <uuid>.jsonl session to its first 8 characters and keeps other names', () => {
  assert.equal(labelOf(entry('/p/aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa.jsonl', 'session')), 'aaaaaaaa…');
  assert.equal(labelOf(entry('/p/x/subagents/agent-a1b2.jsonl', 'subagent transcript')), 'agent-a1b2.jsonl');
  assert.equal(labelOf(entry('/logs/terminal-1.log', 'log')), 'terminal-1.log');
});

test('describeEntry, tooltipOf and healthOf say the first error, else the warnings, else ok', () => {
  const broken = entry('/p/bbbb.jsonl', 'session', 2, 1, 5);
  assert.equal(describeEntry(broken), 'line 6: tool_use toolu_01RUN has no tool_result immediately after it');
  assert.equal(
    tooltipOf(broken),
    'session: /p/bbbb.jsonl\n2 errors, 1 warning\nFirst error, line 6: tool_use toolu_01RUN has no tool_result immediately after it',
  );
  assert.equal(healthOf(broken), 'error');
  const warned = entry('/p/w.jsonl', 'session', 0, 1);
  assert.equal(describeEntry(warned), '1 warning');
  assert.equal(healthOf(warned), 'warning');
  const fine = entry('/p/f.jsonl', 'session');
  assert.equal(describeEntry(fine), 'ok');
  assert.equal(tooltipOf(fine), 'session: /p/f.jsonl\n0 errors, 0 warnings');
  assert.equal(healthOf(fine), 'ok');
});
