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

export function statusText(count: number): string {
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
