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

/** Distinct documents with at least one rewind-lsp diagnostic of the given (error) severity. */
export function countBrokenSessions(
  entries: ReadonlyArray<readonly [unknown, readonly DiagnosticLike[]]>,
  errorSeverity: number,
): number {
  const broken = new Set<string>();
  for (const [uri, diagnostics] of entries) {
    if (diagnostics.some((d) => d.source === SOURCE && d.severity === errorSeverity)) broken.add(String(uri));
  }
  return broken.size;
}

/** The status bar text; `notRunning` is why the server is not running (then no check mark). */
export function statusText(count: number, notRunning?: string): string {
  if (notRunning !== undefined) return `$(error) rewind-lsp not running: ${notRunning}`;
  if (count === 0) return '$(check) rewind-lsp';
  return `$(error) ${count} broken session${count === 1 ? '' : 's'}`;
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
