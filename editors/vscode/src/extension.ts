import * as os from 'node:os';
import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  MessageType,
  ShowMessageNotification,
  type ShowMessageParams,
  type DocumentSelector,
  type LanguageClientOptions,
  type ServerOptions as LspServerOptions,
} from 'vscode-languageclient/node';
import { commandErrorOf, countBroken, isMarkdownUri, pickRuleId, resumeCommandOf, rewindResultText, statusText } from './diagnostics';
import { ResultMessages, type ServerMessage } from './resultMessage';
import { resolveServerCommand } from './serverCommand';
import { SESSIONS_REQUEST, type SessionNode } from './sessions';
import { OPEN_COMMAND, REFRESH_COMMAND, REPAIR_COMMAND, SessionsProvider, VIEW_ID, openSession } from './sessionsView';
import { SECTION, documentPatterns, sectionToServerOptions, toServerOptions } from './settings';
import { TERMINAL_OUTPUT_NOTIFICATION, isClaudeCommandLine, type TerminalOutputParams } from './terminal';

const CLIENT_ID = 'rewind-lsp';
/** Server commands (docs/CONTRACT.md). vscode-languageclient registers them as VS Code commands itself. */
const SERVER = {
  rewind: 'rewind-lsp.rewind',
  repair: 'rewind-lsp.repair',
  rewindTo: 'rewind-lsp.rewindTo',
  showFix: 'rewind-lsp.showFix',
  copyResumeCommand: 'rewind-lsp.copyResumeCommand',
} as const;

let client: LanguageClient | undefined;
let selector: DocumentSelector = [];
let output: vscode.OutputChannel;
/** Why the server is not running (shown in the status bar), or undefined while it runs. */
let notRunning: string | undefined = 'starting';
let updateStatus: () => void = () => undefined;
const COPY_RESUME = 'Copy resume command';
/** Commands whose answer carries a resume command, announced by the server's window/showMessage. */
const RESULT_COMMANDS: ReadonlySet<string> = new Set([SERVER.rewind, SERVER.repair, SERVER.rewindTo]);
const resultMessages = new ResultMessages();
let sessions: SessionsProvider | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('rewind-lsp');
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand('rewind-lsp.rewindSession', () => runOnActiveDocument(SERVER.rewind)),
    vscode.commands.registerCommand('rewind-lsp.repairSession', () => runOnActiveDocument(SERVER.repair)),
    vscode.commands.registerCommand('rewind-lsp.showFixSteps', showFixSteps),
    vscode.commands.registerCommand('rewind-lsp.restartServer', restartClient),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration(`${SECTION}.server.command`) || event.affectsConfiguration(`${SECTION}.logGlobs`)) {
        void restartClient();
      }
    }),
    createStatusItem(),
    ...createSessionsView(),
  );
  watchClaudeTerminals(context);
  await restartClient();
}

export function deactivate(): Thenable<void> | undefined {
  return stopClient();
}

function createStatusItem(): vscode.Disposable {
  const item = vscode.window.createStatusBarItem('rewind-lsp.brokenSessions', vscode.StatusBarAlignment.Left);
  item.name = 'rewind-lsp broken sessions';
  item.command = 'workbench.actions.view.problems';
  item.tooltip = 'Claude Code sessions with rewind-lsp errors: click to open the Problems panel';
  const update = (): void => {
    item.text = statusText(countBroken(vscode.languages.getDiagnostics(), vscode.DiagnosticSeverity.Error), notRunning);
    item.tooltip =
      notRunning === undefined
        ? 'Claude Code sessions with rewind-lsp errors: click to open the Problems panel'
        : `The rewind-lsp language server is not running: ${notRunning} (see the rewind-lsp output)`;
  };
  updateStatus = update;
  update();
  item.show();
  return vscode.Disposable.from(item, vscode.languages.onDidChangeDiagnostics(update));
}

/** The `Claude sessions` view: refreshed when diagnostics change, when the server (re)starts and on its button. */
function createSessionsView(): vscode.Disposable[] {
  const provider = new SessionsProvider(() => (client?.isRunning() ? client.sendRequest(SESSIONS_REQUEST, {}) : undefined));
  sessions = provider;
  const view = vscode.window.createTreeView(VIEW_ID, { treeDataProvider: provider, showCollapseAll: true });
  return [
    provider,
    view,
    // A hidden view asks the server nothing; shown again, it reloads.
    view.onDidChangeVisibility(({ visible }) => {
      if (visible) provider.refresh();
    }),
    vscode.commands.registerCommand(REFRESH_COMMAND, () => provider.refresh()),
    vscode.commands.registerCommand(OPEN_COMMAND, (node: SessionNode) => openSession(node)),
    vscode.commands.registerCommand(REPAIR_COMMAND, (node: SessionNode) =>
      runResultCommand(() => executeServerCommand(SERVER.repair, [node.entry.uri])),
    ),
    vscode.languages.onDidChangeDiagnostics(() => {
      if (view.visible) provider.refreshSoon();
    }),
  ];
}

async function startClient(): Promise<void> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const resolution = resolveServerCommand(config.get('server.command'), {
    path: process.env.PATH,
    pathExt: process.platform === 'win32' ? process.env.PATHEXT : undefined,
    home: os.homedir(),
    workspaceFolder: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
  });
  if (!resolution.ok) {
    setNotRunning(resolution.reason);
    output.appendLine(resolution.message);
    void vscode.window.showErrorMessage(resolution.message, 'Open Settings').then((choice) => {
      if (choice) void vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.server.command`);
    });
    return;
  }
  output.appendLine(`Starting ${[resolution.command, ...resolution.args].join(' ')}`);
  const serverOptions: LspServerOptions = { command: resolution.command, args: resolution.args };
  const options = toServerOptions((key) => config.get(key));
  selector = documentPatterns(options.logGlobs).map((pattern) => ({ scheme: 'file', pattern }));
  const clientOptions: LanguageClientOptions = {
    documentSelector: selector,
    initializationOptions: options,
    outputChannel: output,
    middleware: {
      window: {
        // Fix pages are Markdown: show them rendered, not as an editable file.
        showDocument: async (params, next) => {
          if (!isMarkdownUri(params.uri)) {
            const result = await next(params, new vscode.CancellationTokenSource().token);
            return 'success' in result ? result : { success: false };
          }
          await vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.parse(params.uri));
          return { success: true };
        },
      },
      executeCommand: async (command, args, next) => {
        const send = async (): Promise<unknown> => next(command, args);
        const result: unknown = RESULT_COMMANDS.has(command) ? await runResultCommand(send) : await send();
        const resumeCommand = logCommandResult(command, result);
        if (command === SERVER.copyResumeCommand && resumeCommand !== undefined) {
          await vscode.env.clipboard.writeText(resumeCommand);
          void vscode.window.showInformationMessage(`Copied \`${resumeCommand}\` to the clipboard.`);
        }
        return result;
      },
      workspace: {
        didChangeConfiguration: async (sections, next) => {
          try {
            await next(sections);
          } catch (error) {
            // A change of server.command or logGlobs also restarts this client: a send that lost that race is moot.
            if (newClient.isRunning()) throw error;
          }
        },
        // Answer `workspace/configuration` for our section with the same shape as initializationOptions.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (!Array.isArray(result)) return result;
          return result.map((value: unknown, i) => (params.items[i]?.section === SECTION ? sectionToServerOptions(value) : value));
        },
      },
    },
  };
  const newClient = new LanguageClient(CLIENT_ID, 'rewind-lsp', serverOptions, clientOptions);
  client = newClient;
  // Replaces the client's own window/showMessage handler (same toasts), so a Rewind/Repair result is shown once.
  newClient.onNotification(ShowMessageNotification.type, (params: ShowMessageParams) => {
    if (!resultMessages.hold(params)) showServerMessage(params);
  });
  try {
    await newClient.start();
    setNotRunning(undefined);
    sessions?.refresh();
  } catch (error) {
    setNotRunning('failed to start');
    output.appendLine(`The language server failed to start: ${String(error)}`);
    void vscode.window.showErrorMessage(`rewind-lsp: the language server failed to start (see the rewind-lsp output).`);
  }
}

function setNotRunning(reason: string | undefined): void {
  notRunning = reason;
  updateStatus();
}

async function stopClient(): Promise<void> {
  const current = client;
  setNotRunning('stopped');
  client = undefined;
  if (current === undefined) return;
  try {
    await current.stop();
  } catch (error) {
    output.appendLine(`Stopping the language server: ${String(error)}`);
  }
}

/** Restarts run one after the other, so that quick setting changes never leave two servers running. */
let lifecycle: Promise<void> = Promise.resolve();

function restartClient(): Promise<void> {
  lifecycle = lifecycle.then(async () => {
    await stopClient();
    await startClient();
  });
  return lifecycle;
}

async function executeServerCommand(command: string, args: unknown[]): Promise<unknown> {
  if (client === undefined || !client.isRunning()) {
    void vscode.window.showErrorMessage('rewind-lsp: the language server is not running (see the rewind-lsp output).');
    return undefined;
  }
  try {
    const result: unknown = await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    logCommandResult(command, result);
    return result;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    output.appendLine(`${command} failed: ${message}`);
    void vscode.window.showErrorMessage(`rewind-lsp: ${message}`);
    return undefined;
  }
}

function activeCheckedEditor(): vscode.TextEditor | undefined {
  const editor = vscode.window.activeTextEditor;
  if (editor !== undefined && vscode.languages.match(selector, editor.document) > 0) return editor;
  void vscode.window.showWarningMessage('rewind-lsp: open a Claude Code transcript (.jsonl) or a terminal log first.');
  return undefined;
}

async function runOnActiveDocument(command: typeof SERVER.rewind | typeof SERVER.repair): Promise<void> {
  const editor = activeCheckedEditor();
  if (editor === undefined) return;
  await runResultCommand(() => executeServerCommand(command, [editor.document.uri.toString()]));
}

function showServerMessage(params: ServerMessage): void {
  if (params.type === MessageType.Error) void vscode.window.showErrorMessage(params.message);
  else if (params.type === MessageType.Warning) void vscode.window.showWarningMessage(params.message);
  else void vscode.window.showInformationMessage(params.message);
}

/** Runs a Rewind/Repair: the server writes the new session, shows it and announces it in a
 * window/showMessage; that one message is shown here, with a button that copies the resume command. */
async function runResultCommand(send: () => Promise<unknown>): Promise<unknown> {
  resultMessages.begin();
  let result: unknown;
  try {
    result = await send();
  } finally {
    const released = resultMessages.end(resumeCommandOf(result));
    for (const message of released.others) showServerMessage(message);
    void offerResumeCommand(result, released.withButton?.message);
  }
  return result;
}

/** The result toast: the server's own words when it sent them, else the extension's. */
async function offerResumeCommand(result: unknown, serverText: string | undefined): Promise<void> {
  const text = serverText ?? rewindResultText(result);
  const resume = resumeCommandOf(result);
  if (text === undefined || resume === undefined) return;
  const choice = await vscode.window.showInformationMessage(text, COPY_RESUME);
  if (choice === COPY_RESUME) {
    await vscode.env.clipboard.writeText(resume);
    void vscode.window.showInformationMessage(`Copied \`${resume}\` to the clipboard.`);
  }
}

/** Logs a server command's answer to the output channel; returns its resume command, if any. */
function logCommandResult(command: string, result: unknown): string | undefined {
  const error = commandErrorOf(result);
  if (error !== undefined) output.appendLine(`${command} failed: ${error}`);
  const resumeCommand = resumeCommandOf(result);
  if (resumeCommand !== undefined) output.appendLine(`${command}: ${resumeCommand}`);
  return resumeCommand;
}

async function showFixSteps(): Promise<void> {
  const editor = activeCheckedEditor();
  if (editor === undefined) return;
  const ruleId = pickRuleId(vscode.languages.getDiagnostics(editor.document.uri), editor.selection.active);
  if (ruleId === undefined) {
    void vscode.window.showInformationMessage('rewind-lsp: this file has no rewind-lsp diagnostics.');
    return;
  }
  await executeServerCommand(SERVER.showFix, [ruleId]);
}

/** Streams the output of `claude` runs in the integrated terminal to the server (VS Code 1.93+ shell integration). */
function watchClaudeTerminals(context: vscode.ExtensionContext): void {
  const onStart = (vscode.window as Partial<typeof vscode.window>).onDidStartTerminalShellExecution;
  if (typeof onStart !== 'function') {
    output.appendLine('Terminal shell integration API unavailable: terminal output is not watched.');
    return;
  }
  context.subscriptions.push(
    onStart(async ({ execution, terminal }) => {
      const commandLine: unknown = execution.commandLine;
      const text = typeof commandLine === 'string' ? commandLine : (commandLine as { value?: string } | undefined)?.value;
      if (text === undefined || !isClaudeCommandLine(text)) return;
      // The name as the run starts: terminals retitle themselves after the foreground process.
      const name = terminal.name;
      output.appendLine(`Watching \`${text}\` in terminal "${name}".`);
      try {
        for await (const data of execution.read()) {
          if (client?.isRunning()) {
            const params: TerminalOutputParams = { terminal: name, data };
            await client.sendNotification(TERMINAL_OUTPUT_NOTIFICATION, params);
          }
        }
      } catch (error) {
        output.appendLine(`Reading terminal "${name}": ${String(error)}`);
      }
    }),
  );
}
