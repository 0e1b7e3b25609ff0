import assert from 'node:assert/strict';
import { test } from 'node:test';
import { INFO, ResultMessages } from '../src/resultMessage';

const ERROR = 1;
const RESUME = 'claude --resume 22222222-2222-4222-8222-222222222222';
const WROTE = { type: INFO, message: `rewind-lsp: wrote x.jsonl (truncate); the original is untouched. Resume it with: ${RESUME}` };
const OTHER = { type: INFO, message: 'rewind-lsp: a new tool-use 400 in y.jsonl' };

test('nothing is held while no Rewind/Repair runs', () => {
  const messages = new ResultMessages();
  assert.equal(messages.hold(WROTE), false);
});

test('the message naming the resume command gets the button; the others are shown as sent', () => {
  const messages = new ResultMessages();
  messages.begin();
  assert.equal(messages.hold(OTHER), true);
  assert.equal(messages.hold(WROTE), true);
  assert.deepEqual(messages.end(RESUME), { withButton: WROTE, others: [OTHER] });
  assert.equal(messages.hold(OTHER), false);
});

test('errors are never held: the server reports a failed Rewind itself', () => {
  const messages = new ResultMessages();
  messages.begin();
  assert.equal(messages.hold({ type: ERROR, message: 'rewind-lsp: x.jsonl is not a regular file' }), false);
  assert.deepEqual(messages.end(undefined), { withButton: undefined, others: [] });
});

test('an answer without a resume command releases what was held, without a button', () => {
  const messages = new ResultMessages();
  messages.begin();
  messages.hold(WROTE);
  assert.deepEqual(messages.end(undefined), { withButton: undefined, others: [WROTE] });
});

test('with two commands running, messages stay held until the last answer', () => {
  const messages = new ResultMessages();
  const second = { type: INFO, message: 'rewind-lsp: wrote z.jsonl (patch); the original is untouched. Resume it with: claude --resume z' };
  messages.begin();
  messages.begin();
  messages.hold(WROTE);
  messages.hold(second);
  messages.hold(OTHER);
  assert.deepEqual(messages.end(RESUME), { withButton: WROTE, others: [] });
  assert.deepEqual(messages.end('claude --resume z'), { withButton: second, others: [OTHER] });
});
