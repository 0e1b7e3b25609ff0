import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isClaudeCommandLine } from '../src/terminal';

test('command lines running claude are recognised', () => {
  for (const line of [
    'claude',
    'claude --resume 11111111-1111-4111-8111-111111111111',
    '  claude -p "hi"',
    'npx claude',
    'cd app && claude',
    'ANTHROPIC_LOG=debug claude',
    '/home/me/.local/bin/claude --continue',
    'time claude; echo done',
    'claude.exe',
  ]) {
    assert.equal(isClaudeCommandLine(line), true, line);
  }
});

test('other command lines are not', () => {
  for (const line of ['', 'ls', 'claudette', 'claude-code-router start', 'git commit -m "claude"', 'cat claude.log', 'echo x-claude']) {
    assert.equal(isClaudeCommandLine(line), false, line);
  }
});
