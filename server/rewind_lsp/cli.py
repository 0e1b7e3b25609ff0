"""The `rewind-lsp` command: check, rewind, doctor, serve, hook, capture."""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .findings import Finding, Severity
from .redact import redact

if TYPE_CHECKING:
    from .rules import RuleSet

# The engine is imported by the commands that use it: `serve` and `hook` start on every editor
# launch and every prompt, and must not pay for the rules loader, the log scanner or rewind.
REWIND_MODES = ("truncate", "patch")  # rewind.MODES; a test keeps them equal

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"rewind-lsp: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _rules(dirs: Sequence[str]) -> RuleSet:
    from .rules import RuleError, load_rules

    try:
        return load_rules(dirs)
    except RuleError as exc:
        print(f"rewind-lsp: bad rule: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"not a number of processes: {text!r} (0 means one per core)")
    return n


def _check_all(
    paths: Sequence[str], rules: RuleSet | None, jobs: int = 1
) -> tuple[list[tuple[str, Finding]], list[str]]:
    from .check import check_path, discover, is_regular_file

    results: list[tuple[str, Finding]] = []
    problems: list[str] = []
    for path in discover(paths):
        if os.path.exists(path) and not os.path.isdir(path) and not is_regular_file(path):
            problems.append(f"{path}: not a regular file (a pipe or device is never read)")
            continue
        try:
            results.extend((path, f) for f in check_path(path, rules, jobs))
        except FileNotFoundError:
            problems.append(f"{path}: no such file or folder")
        except PermissionError:
            problems.append(f"{path}: permission denied")
        except IsADirectoryError:
            problems.append(f"{path}: is a folder")
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
    return results, problems


def cmd_check(args: argparse.Namespace) -> int:
    from .report import to_json, to_sarif, to_text

    # Without --rule-dir the shipped rules load only when a finding needs one: a clean check skips them.
    rules = _rules(args.rule_dir) if args.rule_dir else None
    results, problems = _check_all(args.paths, rules, args.jobs)
    if args.min_severity:
        limit = Severity.parse(args.min_severity)
        results = [(p, f) for p, f in results if f.severity <= limit]
    if args.format == "json":
        print(to_json(results))
    elif args.format == "sarif":
        print(to_sarif(results, rules or _rules([])))
    elif results:
        print(to_text(results))
    for p in problems:
        print(f"rewind-lsp: {p}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    return EXIT_FOUND if any(f.severity == Severity.ERROR for _, f in results) else EXIT_OK


def cmd_scan_machine(args: argparse.Namespace) -> int:
    """No arguments: check every Claude Code session on this machine; list the broken ones."""
    from .check import claude_projects_dir, discover

    root = claude_projects_dir()
    if not root.is_dir():
        print(f"No Claude Code sessions found: {root} does not exist (set CLAUDE_CONFIG_DIR if yours is elsewhere).")
        return EXIT_OK
    rules = None  # the shipped rules, loaded by the checks when a finding needs them
    # Subagent transcripts (`<session>/subagents/agent-<id>.jsonl`, or `agent-<id>.jsonl` beside the
    # sessions in older versions) are not sessions one can resume.
    sessions = [p for p in discover([str(root)], (".jsonl",))
                if "/subagents/" not in p.replace(os.sep, "/") and not os.path.basename(p).startswith("agent-")]
    broken: dict[str, list[Finding]] = {}
    problems: list[str] = []
    for path in sessions:
        results, errs = _check_all([path], rules, 0)
        problems.extend(errs)
        errors = [f for _, f in results if f.severity == Severity.ERROR]
        if errors:
            broken[path] = errors
    print(f"Checked {len(sessions)} Claude Code session(s) under {root}.")
    if not broken:
        print("No broken sessions: every tool call pairs.")
    for path, errors in broken.items():
        first = errors[0]
        print(f"\nBROKEN  {path}")
        print(f"  {len(errors)} error(s); first: line {first.start.line}: {first.rule}: {redact(first.message)}")
        print(f"  fix:    rewind-lsp rewind {path}            (cut back to the last good point)")
        print(f"     or:  rewind-lsp rewind --mode patch {path}   (keep everything)")
        print("  then run the `claude --resume <id>` line it prints.")
    for p in problems:
        print(f"rewind-lsp: {p}", file=sys.stderr)
    return EXIT_FOUND if broken else (EXIT_USAGE if problems else EXIT_OK)


def cmd_rewind(args: argparse.Namespace) -> int:
    from .check import is_transcript_path
    from .rewind import RewindError, rewind

    if not is_transcript_path(args.file):
        print(f"rewind-lsp: {args.file}: not a transcript (.jsonl)", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = rewind(args.file, mode=args.mode, out=args.out, in_place=args.in_place)
    except RewindError as exc:
        print(f"rewind-lsp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # The file the call failed on (a link's or a rename's destination first), not always FILE.
        print(f"rewind-lsp: {exc.filename2 or exc.filename or args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    # Claude Code looks a session up by id in the project folder of its working directory: a copy
    # written elsewhere (--out) must be moved beside the original first.
    elsewhere = result.path.resolve().parent != Path(args.file).resolve().parent
    for w in result.warnings:
        print(f"rewind-lsp: warning: {redact(w)}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps({
            "path": str(result.path), "session_id": result.session_id, "mode": result.mode,
            "backup": str(result.backup) if result.backup else None, "fixed": result.fixed,
            # null when the file's name is no session id: no command would find it.
            "resume_command": result.resume_command if result.resumable else None, "cwd": result.cwd,
            "beside_original": not elsewhere, "warnings": result.warnings,
        }, indent=2))
        return EXIT_OK
    print(f"Wrote {result.path} ({result.mode}); the original is untouched" if not result.backup
          else f"Repaired {result.path} in place; backup at {result.backup}")
    for line in result.fixed:
        print(f"  - {redact(line)}")
    if not result.resumable:
        print(f"\n{result.path.name} is not named <session id>.jsonl (a UUID), so `claude --resume` cannot find it.")
        return EXIT_OK
    if elsewhere:
        sub = result.path.with_suffix("")
        what = f"{result.path} (and its folder {sub})" if sub.is_dir() else str(result.path)
        print(f"\nClaude Code finds a session only in its project folder: move {what} "
              f"into {Path(args.file).resolve().parent} (where the original is) before resuming.")
    # Quoted: a folder with spaces must work, and a cwd from a shared transcript must not run code.
    where = f"cd {shlex.quote(result.cwd)} && " if result.cwd else ""
    print(f"\nResume it with:\n  {where}{result.resume_command}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import report

    print(report(args.paths or None))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not host or not port.isdigit():
            print("rewind-lsp: --tcp wants HOST:PORT, for example 127.0.0.1:2087", file=sys.stderr)
            return EXIT_USAGE
        from .lsp.server import server

        server.start_tcp(host, int(port))
    else:
        from .lsp.early import serve_stdio

        serve_stdio(sys.stdin.buffer, sys.stdout.buffer)  # imports the server while `initialize` is answered
    return EXIT_OK


def cmd_capture(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .capture import capture, default_log_path

    argv = [a for a in args.argv if a != "--"] if args.argv[:1] == ["--"] else list(args.argv)
    if not argv:
        print("rewind-lsp: capture needs a command, for example: rewind-lsp capture -- claude", file=sys.stderr)
        return EXIT_USAGE
    log_path = Path(args.log) if args.log else default_log_path(argv[0])
    return capture(argv, log_path)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rewind-lsp", description=(
        "Find and repair the broken tool pairing behind Claude Code's "
        "'API Error: 400 due to tool use concurrency issues'. With no command: check every session on this machine."
    ))
    parser.add_argument("--version", action="version", version=f"rewind-lsp {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("check", help="check transcripts (*.jsonl) and terminal logs (*.log)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("--rule-dir", action="append", default=[], metavar="DIR", help="extra rule folder (repeatable)")
    p.add_argument("--min-severity", choices=("error", "warning", "information", "hint"),
                   help="report only findings at least this severe")
    p.add_argument("--jobs", type=_jobs, default=0, metavar="N",
                   help="processes a large transcript may be checked by (default 0: one per core; 1: no others)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("rewind", help="write a repaired copy of a session that `claude --resume` accepts",
                       description=(
                           "Write a repaired copy of a session that `claude --resume` accepts. By default it is a "
                           "new session beside the original (a new <uuid>.jsonl, its subagent transcripts copied "
                           "along); the original is never written. The copy is written atomically with the "
                           "original's permissions, and a session that changes meanwhile is refused."))
    p.add_argument("file", metavar="FILE")
    p.add_argument("--mode", choices=REWIND_MODES, default="truncate",
                   help="truncate: cut back to the last point where everything pairs; patch: keep everything")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--out", metavar="PATH", help=(
        "write the new session here instead of beside the original: either a file named <session id>.jsonl "
        "(a lowercase UUID, which becomes the new session id: Claude Code resumes a session by the id in its "
        "file name) or an existing folder to put a new <uuid>.jsonl in; any other name is refused. An "
        "existing file is never overwritten. Claude Code finds a session only in its project folder "
        "(where the original is), so a copy written elsewhere must be moved there to be resumed"))
    target.add_argument("--in-place", action="store_true", help=(
        "replace the original (same session id), keeping a timestamped backup beside it; a line the "
        "still-running session appends during the swap is kept at the end of the backup, with a warning"))
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_rewind)

    p = sub.add_parser("doctor", help="a report for bug reports, secrets redacted")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="transcripts or folders (default: the Claude projects folder)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("serve", help="run the language server (stdio)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead, for debugging")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("capture", help="run a command (claude) under a pty and tee its output to a watched log")
    p.add_argument("--log", metavar="FILE", help="log file (default: a new file in the user log folder)")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    p.set_defaults(func=cmd_capture)

    from . import hook

    hook.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Ids and text come from files anyone may have written: a lone surrogate or a character the
    # terminal's encoding lacks is printed escaped, never a UnicodeEncodeError traceback.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return cmd_scan_machine(args)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
