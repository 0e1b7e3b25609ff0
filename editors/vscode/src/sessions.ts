// The `Claude sessions` view's model: the server's `rewind-lsp/sessions` answer (docs/CONTRACT.md) as a tree,
// broken sessions first, a subagent transcript under its session. No `vscode` import.

export const SESSIONS_REQUEST = 'rewind-lsp/sessions';

export interface SessionEntry {
  uri: string;
  path: string;
  kind: 'session' | 'subagent transcript' | 'log';
  sessionId: string | null;
  errors: number;
  warnings: number;
  /** 0-based line of the first error. */
  firstError: { line: number; message: string } | null;
}

export interface SessionNode {
  entry: SessionEntry;
  /** Subagent transcripts of this session (`<folder>/<sessionId>/subagents/*.jsonl`). */
  children: SessionNode[];
}

function isEntry(value: unknown): value is SessionEntry {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.uri === 'string' && typeof v.path === 'string' && typeof v.kind === 'string' && typeof v.errors === 'number';
}

/** The well-formed entries of a `rewind-lsp/sessions` answer; anything else is an empty list. */
export function entriesOf(answer: unknown): SessionEntry[] {
  const list = (answer as { sessions?: unknown } | null)?.sessions;
  if (!Array.isArray(list)) return [];
  return list.filter(isEntry).map((e) => ({
    ...e,
    warnings: typeof e.warnings === 'number' ? e.warnings : 0,
    firstError: e.firstError ?? null,
  }));
}

/** `<folder>/<sessionId>` of a subagent transcript in the 2.x layout, else undefined. */
function parentStem(path: string): string | undefined {
  const at = path.replace(/\\/g, '/').lastIndexOf('/subagents/');
  return at > 0 ? path.replace(/\\/g, '/').slice(0, at) : undefined;
}

function rank(node: SessionNode): number {
  const broken = node.entry.errors > 0 || node.children.some((c) => c.entry.errors > 0);
  return broken ? 0 : 1;
}

/** Sessions (and logs) at the top, broken ones first (a session with a broken subagent counts as broken), the
 * server's order kept otherwise; a subagent transcript whose session is listed goes under it. */
export function sessionTree(entries: readonly SessionEntry[]): SessionNode[] {
  const byStem = new Map<string, SessionNode>();
  const top: SessionNode[] = [];
  for (const entry of entries) {
    if (entry.kind === 'subagent transcript') continue;
    const node: SessionNode = { entry, children: [] };
    top.push(node);
    if (entry.kind === 'session') byStem.set(entry.path.replace(/\\/g, '/').replace(/\.jsonl$/, ''), node);
  }
  for (const entry of entries) {
    if (entry.kind !== 'subagent transcript') continue;
    const stem = parentStem(entry.path);
    const parent = stem === undefined ? undefined : byStem.get(stem);
    if (parent !== undefined) parent.children.push({ entry, children: [] });
    else top.push({ entry, children: [] });
  }
  return top.map((node, i) => ({ node, i })).sort((a, b) => rank(a.node) - rank(b.node) || a.i - b.i).map((x) => x.node);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The row's description: the first error, else the warning count, else `ok`. */
export function describeEntry(entry: SessionEntry): string {
  if (entry.firstError !== null) return `line ${entry.firstError.line + 1}: ${entry.firstError.message}`;
  if (entry.warnings > 0) return plural(entry.warnings, 'warning');
  return 'ok';
}

/** The row's tooltip: kind, path, counts and the first error. */
export function tooltipOf(entry: SessionEntry): string {
  const counts = `${plural(entry.errors, 'error')}, ${plural(entry.warnings, 'warning')}`;
  const lines = [`${entry.kind}: ${entry.path}`, counts];
  if (entry.firstError !== null) lines.push(`First error, line ${entry.firstError.line + 1}: ${entry.firstError.message}`);
  return lines.join('\n');
}

/** The row's label: the file's name, a `<uuid>.jsonl` session shortened to its id's first 8 characters (as
 * short ids go; the whole path is in the tooltip), so the first error fits beside it. */
export function labelOf(entry: SessionEntry): string {
  const name = entry.path.replace(/\\/g, '/').split('/').pop() ?? entry.path;
  const uuid = /^([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.jsonl$/i.exec(name);
  return uuid ? `${uuid[1]}…` : name;
}

export type Health = 'error' | 'warning' | 'ok';

export function healthOf(entry: SessionEntry): Health {
  return entry.errors > 0 ? 'error' : entry.warnings > 0 ? 'warning' : 'ok';
}
