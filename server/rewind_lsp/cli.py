"""The `rewind-lsp` command: check, rewind, doctor, serve, hook, capture."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .findings import Finding, Severity
from .interrupts import load_engine, sigint_held
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


def _cache_dir(args: argparse.Namespace) -> Path | None:
    """The folder of saved check states, or None with --no-cache."""
    if args.no_cache:
        return None
    from .index import states_dir

    return states_dir()


def _progress_stream(args: argparse.Namespace) -> TextIO | None:
    """stderr when a person watches it (a terminal, no --quiet): the progress line goes there."""
    return sys.stderr if not args.quiet and sys.stderr.isatty() else None


def _check_all(
    args: argparse.Namespace, paths: Sequence[str], rules: RuleSet | None
) -> tuple[list[tuple[str, list[Finding]]], list[str], int]:
    """(each file with its findings, in order; problems; how many files were read)."""
    from .batch import check_files
    from .check import discover

    files = list(discover(paths))
    answers = check_files(files, rules, args.jobs, _cache_dir(args), _progress_stream(args))
    results = [(path, a.findings) for path, a in zip(files, answers, strict=True) if a.problem is None]
    problems = [a.problem for a in answers if a.problem is not None]
    return results, problems, len(files)


def cmd_check(args: argparse.Namespace) -> int:
    from .report import to_json, to_sarif, to_text

    # Without --rule-dir the shipped rules load only when a finding needs one: a clean check skips them.
    rules = _rules(args.rule_dir) if args.rule_dir else None
    checked_files, problems, checked = _check_all(args, args.paths, rules)
    results = [(path, f) for path, found in checked_files for f in found]
    if args.min_severity:
        limit = Severity.parse(args.min_severity)
        results = [(p, f) for p, f in results if f.severity <= limit]
    if not checked and not problems:
        # Nothing to say on stdout, but never silence: a wrong folder would look like a healthy one.
        print(f"rewind-lsp: checked 0 sessions, 0 logs in {', '.join(args.paths)}", file=sys.stderr)
    if args.format == "json":
        print(to_json(results))
    elif args.format == "sarif":
        print(to_sarif(results, rules or _rules([])))
    elif results:
        print(to_text(results))
    for p in problems:
        print(f"rewind-lsp: {p}", file=sys.stderr)
    from .advice import already_repaired

    for path in sorted({p for p, f in results if f.severity == Severity.ERROR}):
        note = already_repaired(path)
        if note:
            print(f"rewind-lsp: {path}: {redact(note)}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    return EXIT_FOUND if any(f.severity == Severity.ERROR for _, f in results) else EXIT_OK


def _owner_session(agent: str, sessions: set[str]) -> str | None:
    """The session a subagent transcript belongs to: its folder's, or (1.0.x) the one its lines name."""
    norm = agent.replace(os.sep, "/")
    if "/subagents/" in norm:
        candidate = norm.split("/subagents/", 1)[0] + ".jsonl"
        return candidate if candidate in sessions else None
    try:
        with open(agent, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    import re

    m = re.search(rb'"sessionId"\s*:\s*"([0-9a-f-]{36})"', head)
    if m is None:
        return None
    named = os.path.join(os.path.dirname(agent), m.group(1).decode() + ".jsonl")
    return named if named in sessions else None


def _first(f: Finding) -> dict[str, object]:
    return {"line": f.start.line, "rule": f.rule, "message": redact(f.message)}


def cmd_scan_machine(args: argparse.Namespace) -> int:
    """No arguments: check every Claude Code session on this machine; list the broken ones.

    Words, the same on every surface: a *session* is a `<id>.jsonl` one can resume; a *subagent
    transcript* belongs to a session and is reported under it; terminal logs are not sessions."""
    from .advice import rewind_command
    from .check import claude_projects_dir, codex_sessions_dir, discover, is_subagent_transcript
    from .codex import is_rollout_name

    root = claude_projects_dir()
    codex_root = codex_sessions_dir()
    as_json = args.format == "json"
    # Codex sessions are checked beside Claude Code's when Codex is installed (its sessions folder exists).
    candidates = discover([str(codex_root)], (".jsonl",)) if codex_root.is_dir() else iter(())
    rollouts = [p for p in candidates if is_rollout_name(p)]
    if not root.is_dir() and not rollouts:
        message = f"No Claude Code sessions found: {root} does not exist (set CLAUDE_CONFIG_DIR if yours is elsewhere)."
        print(json.dumps({"root": str(root), "sessions": 0, "subagent_transcripts": 0, "broken": [], "warnings": [],
                          "codex_root": str(codex_root), "codex_sessions": 0, "note": message}, indent=2)
              if as_json else message)
        return EXIT_OK
    files = list(discover([str(root)], (".jsonl",))) if root.is_dir() else []
    sessions = [p for p in files if not is_subagent_transcript(p)]
    agents = [p for p in files if is_subagent_transcript(p)]
    session_set = set(sessions) | set(rollouts)
    problems: list[str] = []
    errors_of: dict[str, list[Finding]] = {}
    warnings_of: dict[str, list[Finding]] = {}
    agent_errors: dict[str, list[tuple[str, list[Finding]]]] = {}
    checked_files, problems, _ = _check_all(args, sessions + agents + rollouts, None)
    for path, found in checked_files:
        errors = [f for f in found if f.severity == Severity.ERROR]
        if path in session_set:
            if errors:
                errors_of[path] = errors
            else:
                recorded = [f for f in found if f.rule == "tool-use-concurrency-400"
                            and f.severity == Severity.WARNING]
                if recorded:
                    warnings_of[path] = recorded
        elif errors:
            owner = _owner_session(path, session_set) or path  # an orphaned subagent transcript: on its own
            agent_errors.setdefault(owner, []).append((path, errors))
    from .advice import repaired_note
    from .repairs import repaired_copy

    broken = sorted(set(errors_of) | set(agent_errors))
    repaired: list[dict[str, object]] = []
    for path in list(broken):
        done = repaired_copy(path) if path in errors_of else None
        if done is not None:  # said instead of a new repair: repairs must not pile up
            repaired.append({"session": path, "copy": str(done.copy), "session_id": done.session_id,
                             "note": repaired_note(done, path)})
            broken.remove(path)
    report: list[dict[str, object]] = []
    for path in broken:
        own = errors_of.get(path, [])
        subs = agent_errors.get(path, [])
        if own:
            fixes = [rewind_command(path, "--mode", "patch"), rewind_command(path)]
        else:
            fixes = [rewind_command(a, "--mode", "patch", "--in-place") for a, _ in subs]
        report.append({
            "session": path, "errors": len(own), "first": _first(own[0]) if own else None,
            "subagents": [{"path": a, "errors": len(fs), "first": _first(fs[0])} for a, fs in subs],
            "fix": fixes,
        })
    warned: list[dict[str, object]] = [{"session": path, "first": _first(fs[0]), "fix": [rewind_command(path),
                                                               rewind_command(path, "--mode", "patch")]}
              for path, fs in sorted(warnings_of.items()) if path not in errors_of and path not in agent_errors]
    if as_json:
        print(json.dumps({"root": str(root), "sessions": len(sessions), "subagent_transcripts": len(agents),
                          "broken": report, "warnings": warned, "repaired": repaired,
                          "codex_root": str(codex_root), "codex_sessions": len(rollouts)}, indent=2))
    else:
        _print_scan(root, len(sessions), len(agents), report, warned, (codex_root, len(rollouts)))
        for item in repaired:
            print(f"\nREPAIRED {item['session']}\n  {item['note']}")
    for p in problems:
        print(f"rewind-lsp: {p}", file=sys.stderr)
    return EXIT_FOUND if broken else (EXIT_USAGE if problems else EXIT_OK)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _print_scan(root: Path, sessions: int, agents: int, report: list[dict[str, object]],
                warned: list[dict[str, object]], codex: tuple[Path, int] = (Path(), 0)) -> None:
    counted = f"{_plural(sessions, 'Claude Code session')} ({_plural(agents, 'subagent transcript')})"
    print(f"Checked {counted} under {root}.")
    if codex[1]:
        print(f"Checked {_plural(codex[1], 'Codex session')} under {codex[0]}.")
    if not report:
        print("No broken sessions: every tool call pairs." if not warned else
              "No broken sessions; a recorded 400 to look at:")
    for item in report:
        print(f"\nBROKEN  {item['session']}")
        first = item["first"]
        if isinstance(first, dict):
            print(f"  {_plural(int(str(item['errors'])), 'error')}; first: line {first['line']}: {first['rule']}: "
                  f"{first['message']}")
        for sub in item["subagents"]:  # type: ignore[attr-defined]
            f = sub["first"]
            print(f"  subagent transcript {sub['path']}: {_plural(sub['errors'], 'error')}; first: line {f['line']}: "
                  f"{f['rule']}: {f['message']}")
        fixes = item["fix"]
        assert isinstance(fixes, list)
        if first is not None:
            print(f"  fix:    {fixes[0]}")
            print("          (keeps everything; a new session beside the original, which stays untouched)")
            print(f"     or:  {fixes[1]}")
            print("          (cuts back to the last point where every tool call pairs)")
            is_codex = os.path.basename(str(item["session"])).startswith("rollout-")
            print(f"  then run the `{'codex resume' if is_codex else 'claude --resume'} <id>` line it prints.")
        else:
            print("  fix (each subagent transcript in place, a timestamped backup kept):")
            for cmd in fixes:
                print(f"    {cmd}")
    for item in warned:
        first = item["first"]
        fixes = item["fix"]
        assert isinstance(first, dict) and isinstance(fixes, list)
        print(f"\nWARNING {item['session']}")
        print(f"  line {first['line']}: {first['rule']}: {first['message']}")
        print(f"  fix:    {fixes[0]}")
        print("          (cuts before the prompt whose request was refused)")
        print(f"     or:  {fixes[1]}")
        print("          (keeps everything but the recorded error)")


def _rewind_error(args: argparse.Namespace, message: str) -> int:
    """A refused rewind: plain on stderr, or (JSON mode) an object on stdout too, scripts read one stream."""
    if args.format == "json":
        print(json.dumps({"error": redact(message)}, indent=2))
    print(f"rewind-lsp: {redact(message)}", file=sys.stderr)
    return EXIT_USAGE


def _out_problem(out: str) -> str | None:
    """`--out DIR/` (a trailing slash: a folder is meant) that does not exist: say so, not the name rule."""
    if out.endswith(("/", os.sep)) and not os.path.isdir(out):
        return f"--out {out}: no such folder; nothing was written"
    return None


def cmd_rewind(args: argparse.Namespace) -> int:
    from .check import is_transcript_path
    from .rewind import RewindError, preview, rewind

    if not is_transcript_path(args.file):
        return _rewind_error(args, f"{args.file}: not a transcript (.jsonl)")
    if args.out and (problem := _out_problem(args.out)):
        return _rewind_error(args, problem)
    if args.to is not None and args.mode == "patch":
        return _rewind_error(args, "--to cuts the conversation back to a prompt: it goes with --mode truncate only")
    try:
        if args.dry_run:
            return _print_preview(args, preview(args.file, to=args.to))
        result = rewind(args.file, mode=args.mode, out=args.out, in_place=args.in_place, to=args.to)
    except RewindError as exc:
        return _rewind_error(args, str(exc))
    except OSError as exc:
        # The file the call failed on (a link's or a rename's destination first), not always FILE.
        return _rewind_error(args, f"{exc.filename2 or exc.filename or args.file}: {exc.strerror or exc}")
    from .advice import resume_command

    # Claude Code looks a session up by id in the project folder of its working directory: a copy
    # written elsewhere (--out) must be moved beside the original first.
    elsewhere = result.path.resolve().parent != Path(args.file).resolve().parent
    resume, note = resume_command(result.session_id, result.cwd, args.file)
    for w in result.warnings:
        print(f"rewind-lsp: warning: {redact(w)}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps({
            "path": str(result.path), "session_id": result.session_id, "mode": result.mode,
            "backup": str(result.backup) if result.backup else None, "fixed": [redact(x) for x in result.fixed],
            # null when the file's name is no session id: no command would find it.
            "resume_command": resume if result.resumable else None, "cwd": result.cwd,
            "beside_original": not elsewhere, "warnings": [redact(w) for w in result.warnings],
            "kept_messages": result.kept_messages, "dropped_messages": result.dropped_messages,
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
    print(f"\nResume it with:\n  {resume}")
    if note:
        print(f"  ({redact(note)})")
    return EXIT_OK


def _print_preview(args: argparse.Namespace, previews: list[Any]) -> int:
    if args.format == "json":
        print(json.dumps({"path": args.file, "modes": {p.mode: (
            {"refused": redact(p.refused)} if p.refused else {
                "kept_messages": p.kept_messages, "dropped_messages": p.dropped_messages,
                "total_messages": p.total_messages,
                "last_prompt_kept": {"line": p.last_prompt_line, "text": redact(p.last_prompt_text or "")}
                if p.last_prompt_line else None,
                "added_results": p.added_results, "fixed": [redact(x) for x in p.fixed],
                "left_out": [redact(x) for x in p.left_out],
            }) for p in previews}}, indent=2))
        return EXIT_OK
    print(f"What each mode would do to {args.file} (nothing written):")
    for p in previews:
        print(f"\n{p.mode}:")
        if p.refused:
            print(f"  refused: {redact(p.refused)}")
            continue
        print(f"  keeps {p.kept_messages} of {p.total_messages} messages (drops {p.dropped_messages})")
        if p.last_prompt_line:
            print(f"  last prompt kept: line {p.last_prompt_line}: {redact(p.last_prompt_text or '')!r}")
        if p.added_results:
            print(f"  adds {p.added_results} tool_result(s) marked as errors for calls that never got one")
        for line in p.fixed + p.left_out:
            print(f"  - {redact(line)}")
    return EXIT_OK


def cmd_locate(args: argparse.Namespace) -> int:
    from .check import is_transcript_path
    from .lookup import NoSuchPlace, lookup
    from .navigation import parse_ref

    if parse_ref(args.ref) is None:
        print(f"rewind-lsp: {args.ref!r} is not a message reference: use messages.N or messages.N.content.M",
              file=sys.stderr)
        return EXIT_USAGE
    if not is_transcript_path(args.file) or not os.path.isfile(args.file):
        print(f"rewind-lsp: {args.file}: not a transcript file (a .jsonl session)", file=sys.stderr)
        return EXIT_USAGE
    try:
        place = lookup(args.file, args.ref)
    except NoSuchPlace as exc:
        print(f"rewind-lsp: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FOUND
    except OSError as exc:
        print(f"rewind-lsp: {args.file}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps({"path": str(place.path), "line": place.line, "column": place.column,
                          "message": place.message, "content": place.content, "kind": place.kind,
                          "tool_use_id": place.tool_use_id}))
        return EXIT_OK
    what = f" ({place.kind} {place.tool_use_id})" if place.tool_use_id else (f" ({place.kind})" if place.kind else "")
    ref = f"messages.{place.message}" + (f".content.{place.content}" if place.content is not None else "")
    print(f"{place.path}:{place.line}:{place.column}: {ref} is line {place.line:,}{what}")
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


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """What the main job and `check` share: processes, the saved states, the progress line."""
    p.add_argument("--jobs", type=_jobs, default=0, metavar="N", help=(
        "processes to check files with, the largest first; a transcript over 16 MB checked alone (with no saved "
        "state) is split among them (default 0: one per core; 1: no others)"))
    p.add_argument("--no-cache", action="store_true", help=(
        "read every file whole, neither using nor saving the check states kept in the user cache folder"))
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr (shown only on a terminal)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rewind-lsp", description=(
        "Find and repair the broken tool pairing behind Claude Code's "
        "'API Error: 400 due to tool use concurrency issues'. With no command: check every session on this machine."
    ))
    parser.add_argument("--version", action="version", version=f"rewind-lsp {__version__}")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="with no command: the list of broken sessions as text or JSON")
    _add_run_options(parser)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("check", help="check transcripts (*.jsonl) and terminal logs (*.log)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("--rule-dir", action="append", default=[], metavar="DIR", help="extra rule folder (repeatable)")
    p.add_argument("--min-severity", choices=("error", "warning", "information", "hint"),
                   help="report only findings at least this severe")
    _add_run_options(p)
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
    p.add_argument("--to", metavar="LINE|UUID", help=(
        "cut back to just before this user prompt of the live conversation (its line number or uuid), as "
        "Claude Code's /rewind menu does; truncate only"))
    p.add_argument("--dry-run", action="store_true",
                   help="print what each mode would do (messages kept and dropped, the last prompt kept, results "
                        "added, entries left out); nothing is written")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_rewind)

    p = sub.add_parser("locate", help="the transcript line the API means by messages.N[.content.M]")
    p.add_argument("file", metavar="FILE", help="a session transcript (.jsonl)")
    p.add_argument("ref", metavar="messages.N[.content.M]", help="as the API error names it")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_locate)

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
    try:
        # msgspec is imported with the parser (the hook's commands) and the engine after it: Ctrl-C
        # meanwhile is held off (interrupts.py) and stops the command right after, handled below.
        with sigint_held():
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command in (None, "check", "rewind", "locate"):
                load_engine()
        return cmd_scan_machine(args) if args.command is None else int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `rewind-lsp | head`: the reader left. Quietly: stdout goes nowhere, so the final flush
        # at exit cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
