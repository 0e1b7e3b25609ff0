// Resolves `rewind-lsp.server.command` to an executable (no `vscode` import).
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DEFAULT_COMMAND = ['rewind-lsp', 'serve'];

export const INSTALL_HINT =
  'rewind-lsp is not on PyPI: install it from a clone with `pipx install /path/to/rewind-lsp` ' +
  '(or `pip install /path/to/rewind-lsp`), or run `./scripts/setup` in the clone and set ' +
  '`rewind-lsp.server.command` to its `.venv/bin/rewind-lsp`.';

/** `reason` is the short why for the status bar ("command not found", ...); `message` the full error. */
export type Resolution = { ok: true; command: string; args: string[] } | { ok: false; reason: string; message: string };

export interface ResolveEnv {
  /** The PATH variable. */
  path?: string;
  /** Windows' PATHEXT; leave unset elsewhere. */
  pathExt?: string;
  home?: string;
  workspaceFolder?: string;
  isExecutable?: (file: string) => boolean;
}

export function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function expand(value: string, env: ResolveEnv): string {
  let result = value;
  if (env.workspaceFolder !== undefined) result = result.split('${workspaceFolder}').join(env.workspaceFolder);
  if (env.home !== undefined && (result === '~' || result.startsWith('~/'))) result = env.home + result.slice(1);
  return result;
}

function hasDirectory(file: string): boolean {
  return file.includes('/') || file.includes('\\');
}

/** Looks a bare program name up on PATH (with PATHEXT extensions when given). */
export function findOnPath(program: string, env: ResolveEnv): string | undefined {
  const isExecutable = env.isExecutable ?? isExecutableFile;
  const extensions = env.pathExt ? ['', ...env.pathExt.split(';').filter(Boolean)] : [''];
  const delimiter = env.pathExt ? ';' : path.delimiter;
  for (const dir of (env.path ?? '').split(delimiter)) {
    if (dir === '') continue;
    for (const ext of extensions) {
      const candidate = path.join(dir, program + ext);
      if (isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}

/** Turns the configured command line into an executable path and arguments, or an error with the install hint. */
export function resolveServerCommand(configured: unknown, env: ResolveEnv): Resolution {
  const commandLine =
    Array.isArray(configured) && configured.length > 0 && configured.every((part) => typeof part === 'string')
      ? (configured as string[]).map((part) => expand(part, env))
      : undefined;
  if (commandLine === undefined || commandLine[0].trim() === '') {
    return {
      ok: false,
      reason: 'invalid rewind-lsp.server.command',
      message: `rewind-lsp: \`rewind-lsp.server.command\` must be a non-empty list of strings, like ${JSON.stringify(DEFAULT_COMMAND)}.`,
    };
  }
  const [first, ...args] = commandLine;
  const program =
    hasDirectory(first) && !path.isAbsolute(first) && env.workspaceFolder !== undefined
      ? path.resolve(env.workspaceFolder, first)
      : first;
  const isExecutable = env.isExecutable ?? isExecutableFile;
  const executable = hasDirectory(program) ? (isExecutable(program) ? program : undefined) : findOnPath(program, env);
  if (executable === undefined) {
    const where = hasDirectory(program) ? 'is not an executable file' : 'was not found on PATH';
    const reason = hasDirectory(program) ? 'not an executable file' : 'command not found';
    return { ok: false, reason, message: `rewind-lsp: the language server \`${program}\` ${where}. ${INSTALL_HINT}` };
  }
  return { ok: true, command: executable, args };
}
