// Pure helpers over diagnostics (no `vscode` import; `vscode.Diagnostic` fits these shapes).

export const SOURCE = 'rewind-lsp';

export interface PositionLike {
  line: number;
  character: number;
}

export interface DiagnosticLike {
  source?: string;
  code?: string | number | { value: string | number };
  severity: number;
  range: { start: PositionLike; end: PositionLike };
}

export function ruleIdOf(diagnostic: DiagnosticLike): string | undefined {
  const code = typeof diagnostic.code === 'object' ? diagnostic.code.value : diagnostic.code;
  return code === undefined ? undefined : String(code);
}

function before(a: PositionLike, b: PositionLike): boolean {
  return a.line < b.line || (a.line === b.line && a.character < b.character);
}

function contains(range: DiagnosticLike['range'], position: PositionLike): boolean {
  return !before(position, range.start) && !before(range.end, position);
}

/** The rule id of the rewind-lsp diagnostic under the cursor, else of the file's first one. */
export function pickRuleId(diagnostics: readonly DiagnosticLike[], cursor?: PositionLike): string | undefined {
  const ours = diagnostics.filter((d) => d.source === SOURCE && ruleIdOf(d) !== undefined);
  const underCursor = cursor === undefined ? undefined : ours.find((d) => contains(d.range, cursor));
  const first = ours.reduce<DiagnosticLike | undefined>(
    (best, d) => (best === undefined || before(d.range.start, best.range.start) ? d : best),
    undefined,
  );
  const chosen = underCursor ?? first;
  return chosen === undefined ? undefined : ruleIdOf(chosen);
}

/** What is broken, in the words every surface uses: a session (`<id>.jsonl`, its subagent transcripts
 * `<id>/subagents/agent-*.jsonl` counted under it) and a terminal log (anything else). */
export interface BrokenCount {
  sessions: number;
  logs: number;
}

function sessionOf(uri: string): string | undefined {
  const path = uri.replace(/[?#].*$/, '');
  if (!path.endsWith('.jsonl')) return undefined;
  const sub = path.indexOf('/subagents/');
  if (sub >= 0) return `${path.slice(0, sub)}.jsonl`;
  return path;
}

/** Distinct sessions and logs with at least one rewind-lsp diagnostic of the given (error) severity. */
export function countBroken(
  entries: ReadonlyArray<readonly [unknown, readonly DiagnosticLike[]]>,
  errorSeverity: number,
): BrokenCount {
  const sessions = new Set<string>();
  const logs = new Set<string>();
  for (const [uri, diagnostics] of entries) {
    if (!diagnostics.some((d) => d.source === SOURCE && d.severity === errorSeverity)) continue;
    const session = sessionOf(String(uri));
    if (session !== undefined) sessions.add(session);
    else logs.add(String(uri));
  }
  return { sessions: sessions.size, logs: logs.size };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The status bar text; `notRunning` is why the server is not running (then no check mark). */
export function statusText(count: BrokenCount, notRunning?: string): string {
  if (notRunning !== undefined) return `$(error) rewind-lsp not running: ${notRunning}`;
  const parts: string[] = [];
  if (count.sessions > 0) parts.push(plural(count.sessions, 'broken session'));
  if (count.logs > 0) parts.push(`${plural(count.logs, 'log')} with the 400`);
  if (parts.length === 0) return '$(check) rewind-lsp';
  return `$(error) ${parts.join(', ')}`;
}

/** The `error` of a command answer: the server reports failures as `{"error": "..."}` (and shows them itself). */
export function commandErrorOf(result: unknown): string | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const value = (result as { error?: unknown }).error;
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The `resumeCommand` of a rewind/repair/copyResumeCommand answer, if there is one. */
export function resumeCommandOf(result: unknown): string | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const value = (result as { resumeCommand?: unknown }).resumeCommand;
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The toast after Rewind/Repair: the new file and the resume command, on one line. */
export function rewindResultText(result: unknown): string | undefined {
  const resume = resumeCommandOf(result);
  if (resume === undefined || typeof result !== 'object' || result === null) return undefined;
  const file = (result as { path?: unknown }).path;
  const name = typeof file === 'string' ? file.split(/[\\/]/).pop() : undefined;
  return `rewind-lsp: wrote ${name ?? 'a new session'}; resume it with: ${resume}`;
}

/** Is `uri` a Markdown file (the rules' fix pages), to open as a rendered preview? */
export function isMarkdownUri(uri: string): boolean {
  return /\.md(?:[?#].*)?$/i.test(uri);
}
