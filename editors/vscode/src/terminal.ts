// Recognises Claude Code runs in terminal command lines (no `vscode` import).

/**
 * True when the command line runs `claude`: as the first word (`claude --resume x`), by path
 * (`~/.local/bin/claude`), or after another word or shell operator (`npx claude`, `cd app && claude`).
 */
export function isClaudeCommandLine(commandLine: string): boolean {
  return /(?:^|[\s;&|(])(?:[^\s;&|()'"]*[/\\])?claude(?:\.exe|\.cmd)?(?=$|[\s;&|)])/.test(commandLine.trim());
}

/** The notification that streams terminal output to the server (docs/CONTRACT.md). */
export const TERMINAL_OUTPUT_NOTIFICATION = 'rewindLsp/terminalOutput';

export interface TerminalOutputParams {
  terminal: string;
  data: string;
}
