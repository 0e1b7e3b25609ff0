// Pure mapping of the `rewind-lsp` settings section to the server's options (no `vscode` import).

export const SECTION = 'rewind-lsp';

export const SEVERITIES = ['error', 'warning', 'information', 'hint'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** The server's configuration, as documented in docs/CONTRACT.md ("Settings"). */
export interface ServerOptions {
  watchRoots?: string[];
  logGlobs?: string[];
  ruleDirs?: string[];
  disabledRules?: string[];
  severity?: Record<string, Severity>;
  notifications?: boolean;
}

const STRING_LISTS = ['watchRoots', 'logGlobs', 'ruleDirs', 'disabledRules'] as const;

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function isSeverity(value: unknown): value is Severity {
  return (SEVERITIES as readonly unknown[]).includes(value);
}

/**
 * Builds the server options from a settings reader such as `WorkspaceConfiguration.get`.
 * Unset (`undefined`/`null`) or ill-typed values are left out so the server applies its own default;
 * `severity` keeps only entries naming a known severity.
 */
export function toServerOptions(get: (key: string) => unknown): ServerOptions {
  const options: ServerOptions = {};
  for (const key of STRING_LISTS) {
    const value = get(key);
    if (isStringList(value)) options[key] = value;
  }
  const severity = get('severity');
  if (typeof severity === 'object' && severity !== null && !Array.isArray(severity)) {
    options.severity = Object.fromEntries(
      Object.entries(severity).filter((entry): entry is [string, Severity] => isSeverity(entry[1])),
    );
  }
  const notifications = get('notifications');
  if (typeof notifications === 'boolean') options.notifications = notifications;
  return options;
}

/** Reads the options out of a whole settings section object (as sent in workspace/configuration answers). */
export function sectionToServerOptions(section: unknown): ServerOptions {
  const record = typeof section === 'object' && section !== null ? (section as Record<string, unknown>) : {};
  return toServerOptions((key) => record[key]);
}

/**
 * Document selector patterns: transcripts (`*.jsonl`) and terminal logs (`*.log` plus `logGlobs`).
 * A glob without a folder part matches that file name anywhere in the workspace.
 */
export function documentPatterns(logGlobs: readonly string[] = []): string[] {
  const patterns = ['**/*.jsonl', '**/*.log'];
  for (const glob of logGlobs) {
    const trimmed = glob.trim();
    if (trimmed === '') continue;
    const pattern = trimmed.includes('/') ? trimmed : `**/${trimmed}`;
    if (!patterns.includes(pattern)) patterns.push(pattern);
  }
  return patterns;
}
