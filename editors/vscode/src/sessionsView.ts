// The `Claude sessions` tree view (explorer): the server's watched sessions with their health, broken first.
import * as vscode from 'vscode';
import { describeEntry, entriesOf, healthOf, labelOf, sessionTree, tooltipOf, type SessionNode } from './sessions';

export const VIEW_ID = 'rewind-lsp.sessions';
export const OPEN_COMMAND = 'rewind-lsp.openSession';
export const REPAIR_COMMAND = 'rewind-lsp.repairSessionItem';
export const REFRESH_COMMAND = 'rewind-lsp.refreshSessions';

const ICONS = {
  error: new vscode.ThemeIcon('error', new vscode.ThemeColor('errorForeground')),
  warning: new vscode.ThemeIcon('warning', new vscode.ThemeColor('editorWarning.foreground')),
  ok: new vscode.ThemeIcon('pass'),
};

export class SessionsProvider implements vscode.TreeDataProvider<SessionNode> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  private timer: NodeJS.Timeout | undefined;
  /** The last answer shown, as JSON: a diagnostics burst that changes nothing in the list redraws nothing (a
   * redraw under the pointer loses a click on a row's Repair). */
  private shown: string | undefined;

  /** `fetch` sends `rewind-lsp/sessions`; undefined while no server runs. */
  constructor(private readonly fetch: () => Promise<unknown> | undefined) {}

  refresh(): void {
    this.changed.fire();
  }

  /** After diagnostics change: ask the server (once per burst) and redraw only if the list changed. */
  refreshSoon(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.answer().then((answer) => {
        if (JSON.stringify(answer) !== this.shown) this.refresh();
      });
    }, 300);
  }

  private async answer(): Promise<unknown> {
    return Promise.resolve(this.fetch()).catch(() => undefined);
  }

  async getChildren(node?: SessionNode): Promise<SessionNode[]> {
    if (node !== undefined) return node.children;
    const answer = await this.answer();
    this.shown = JSON.stringify(answer);
    return sessionTree(entriesOf(answer));
  }

  getTreeItem(node: SessionNode): vscode.TreeItem {
    const { entry } = node;
    const item = new vscode.TreeItem(
      labelOf(entry),
      node.children.length > 0 ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
    );
    item.id = entry.uri;
    item.resourceUri = vscode.Uri.parse(entry.uri);
    item.description = describeEntry(entry);
    item.tooltip = tooltipOf(entry);
    item.iconPath = ICONS[healthOf(entry)];
    // `brokenSession` rows get the inline Repair action (package.json, view/item/context).
    item.contextValue = entry.kind === 'session' && entry.errors > 0 ? 'brokenSession' : entry.kind.replace(/ /g, '-');
    item.command = { command: OPEN_COMMAND, title: 'Open at the first error', arguments: [node] };
    return item;
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.changed.dispose();
  }
}

/** Opens the file of a row, the cursor on its first error's line (else the top). */
export async function openSession(node: SessionNode): Promise<void> {
  const line = node.entry.firstError?.line ?? 0;
  const at = new vscode.Range(line, 0, line, 0);
  await vscode.window.showTextDocument(vscode.Uri.parse(node.entry.uri), { selection: at, preview: false });
}
