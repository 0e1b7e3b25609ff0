"""The Claude Code hook: stop a broken session before the API refuses it.

`rewind-lsp hook` reads the hook's JSON on stdin. On `UserPromptSubmit` a session whose live
conversation no longer pairs is blocked with the exact fix; on `SessionStart` (resume) the
user is told. It fails open: any internal error, unreadable file or unknown input exits 0
and is logged, because a hook must never break Claude Code.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .check import _file_fetcher, analyze, claude_config_dir
from .findings import Finding, Severity
from .index import read_indexed
from .paths import user_cache_dir, user_log_dir
from .redact import redact
from .rewind import RewindError, rewind

HOOK_MARK = "rewind-lsp hook"
MAX_LISTED = 5


def _log(message: str) -> None:
    try:
        folder = user_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "hook.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {redact(message)}\n")
    except OSError:
        pass


def live_errors(transcript_path: str) -> list[Finding]:
    """Errors of the conversation Claude Code sends next (the main chain only)."""
    transcript, _ = read_indexed(transcript_path, user_cache_dir() / "index")
    result = analyze(transcript, _file_fetcher(transcript_path))
    main = result.main
    if main is None:
        return []
    return [f for f in result.findings if f.severity == Severity.ERROR and f.facts.get("conversation") == main.label]


def _describe(path: str, errors: list[Finding]) -> str:
    lines = [f"- {f.rule} at line {f.start.line}: {f.message}" for f in errors[:MAX_LISTED]]
    if len(errors) > MAX_LISTED:
        lines.append(f"- … and {len(errors) - MAX_LISTED} more")
    return "\n".join(lines)


def _fix_text(path: str) -> str:
    return (
        "Fix it without losing the session (the original file stays untouched):\n"
        f"  rewind-lsp rewind --mode patch '{path}'\n"
        "then run the `claude --resume <new id>` line it prints."
    )


def decide(payload: dict[str, Any], auto_repair: bool = False) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) for one hook call."""
    event = payload.get("hook_event_name")
    path = payload.get("transcript_path")
    if event not in ("UserPromptSubmit", "SessionStart") or not isinstance(path, str) or not path:
        return 0, "", ""
    if event == "SessionStart" and payload.get("source") != "resume":
        return 0, "", ""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return 0, "", ""
    errors = live_errors(path)
    if not errors:
        return 0, "", ""
    what = (
        "rewind-lsp: this session's tool calls no longer pair up, so Claude Code's next request would fail with "
        "'API Error: 400 due to tool use concurrency issues'.\n" + _describe(path, errors)
    )
    if event == "SessionStart":
        message = what + "\n" + _fix_text(path)
        return (
            0,
            json.dumps(
                {
                    "systemMessage": message,
                    "hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": message},
                }
            ),
            "",
        )
    if auto_repair:
        try:
            result = rewind(path, mode="patch")
        except RewindError as exc:
            _log(f"auto-repair of {path} failed: {exc}")
        else:
            where = f"cd {shlex.quote(result.cwd)} && " if result.cwd else ""
            reason = (
                what + f"\nrewind-lsp repaired it into a new session (the original is untouched): {result.path}\n"
                f"Resume that one instead:\n  {where}{result.resume_command}"
            )
            return 0, json.dumps({"decision": "block", "reason": redact(reason)}), ""
    return 0, json.dumps({"decision": "block", "reason": redact(what + "\n" + _fix_text(path))}), ""


def run_hook(stdin_text: str, auto_repair: bool = False) -> int:
    try:
        payload = json.loads(stdin_text) if stdin_text.strip() else {}
        if not isinstance(payload, dict):
            _log(f"ignored hook input that is not an object: {stdin_text[:200]!r}")
            return 0
        status, out, err = decide(payload, auto_repair)
    except Exception:
        _log("hook failed open:\n" + traceback.format_exc())
        return 0
    if out:
        print(out)
    if err:
        print(err, file=sys.stderr)
    return status


# --- installing into Claude Code's settings -----------------------------------------------------


class SettingsError(Exception):
    pass


def settings_path(scope: str) -> Path:
    if scope == "user":
        return claude_config_dir() / "settings.json"
    if scope == "local":
        return Path.cwd() / ".claude" / "settings.local.json"
    return Path.cwd() / ".claude" / "settings.json"


def hook_command(auto_repair: bool = False) -> str:
    exe = shutil.which("rewind-lsp")
    base = f"'{exe}' hook" if exe and " " in exe else (f"{exe} hook" if exe else f"{sys.executable} -m rewind_lsp hook")
    return base + (" --auto-repair" if auto_repair else "")


def _is_ours(hook: Any) -> bool:
    cmd = hook.get("command") if isinstance(hook, dict) else None
    return isinstance(cmd, str) and ("rewind-lsp' hook" in cmd or "rewind-lsp hook" in cmd or "rewind_lsp hook" in cmd)


def _read_settings(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); fix it first, nothing was changed"
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the settings are not a JSON object; nothing was changed")
    return data


def _write_settings(path: Path, data: dict[str, Any]) -> Path | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        shutil.copy2(path, backup)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return backup


def install(scope: str, auto_repair: bool = False) -> tuple[Path, bool, Path | None]:
    """Merge our hook entries; returns (settings file, changed?, backup)."""
    path = settings_path(scope)
    data = _read_settings(path)
    hooks = data.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise SettingsError(f'{path}: "hooks" is not an object; nothing was changed')
    command = hook_command(auto_repair)
    changed = False
    for event, matcher in (("UserPromptSubmit", None), ("SessionStart", "resume")):
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise SettingsError(f'{path}: "hooks.{event}" is not a list; nothing was changed')
        mine = [h for g in groups if isinstance(g, dict) for h in g.get("hooks", []) if _is_ours(h)]
        if mine and all(h.get("command") == command for h in mine):
            continue
        for g in groups:
            if isinstance(g, dict) and isinstance(g.get("hooks"), list):
                g["hooks"] = [h for h in g["hooks"] if not _is_ours(h)]
        groups[:] = [g for g in groups if not (isinstance(g, dict) and g.get("hooks") == [])]
        group: dict[str, Any] = {"hooks": [{"type": "command", "command": command, "timeout": 30}]}
        if matcher:
            group = {"matcher": matcher, **group}
        groups.append(group)
        changed = True
    backup = _write_settings(path, data) if changed else None
    return path, changed, backup


def uninstall(scope: str) -> tuple[Path, bool, Path | None]:
    path = settings_path(scope)
    if not path.exists():
        return path, False, None
    data = _read_settings(path)
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return path, False, None
    changed = False
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        for g in groups:
            if isinstance(g, dict) and isinstance(g.get("hooks"), list):
                kept = [h for h in g["hooks"] if not _is_ours(h)]
                if len(kept) != len(g["hooks"]):
                    g["hooks"] = kept
                    changed = True
        groups[:] = [g for g in groups if not (isinstance(g, dict) and g.get("hooks") == [])]
        if not groups:
            del hooks[event]
    if not hooks:
        del data["hooks"]
    backup = _write_settings(path, data) if changed else None
    return path, changed, backup


def add_commands(sub: Any) -> None:
    p = sub.add_parser("hook", help="Claude Code hook: block a prompt when the session is broken (reads JSON on stdin)")
    p.add_argument(
        "--auto-repair",
        action="store_true",
        help="repair a broken session into a new one (patch mode) and say which to resume",
    )
    p.set_defaults(func=lambda args: run_hook(sys.stdin.read() if not sys.stdin.isatty() else "", args.auto_repair))

    for name, fn in (("install-hook", install), ("uninstall-hook", uninstall)):
        p = sub.add_parser(name, help=f"{name.split('-')[0]} the hook in Claude Code's settings.json")
        scope = p.add_mutually_exclusive_group()
        scope.add_argument(
            "--user", dest="scope", action="store_const", const="user", help="~/.claude/settings.json (the default)"
        )
        scope.add_argument(
            "--project", dest="scope", action="store_const", const="project", help=".claude/settings.json"
        )
        scope.add_argument(
            "--local", dest="scope", action="store_const", const="local", help=".claude/settings.local.json"
        )
        if name == "install-hook":
            p.add_argument("--auto-repair", action="store_true", help="install the hook with --auto-repair")
        p.set_defaults(func=lambda args, fn=fn, name=name: _settings_command(args, fn, name))


def _settings_command(args: Any, fn: Any, name: str) -> int:
    scope = args.scope or "user"
    try:
        path, changed, backup = fn(scope, args.auto_repair) if name == "install-hook" else fn(scope)
    except SettingsError as exc:
        print(f"rewind-lsp: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rewind-lsp: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not changed:
        print(f"{path}: nothing to change" + (" (already installed)" if name == "install-hook" else " (not installed)"))
    else:
        print(
            f"{path}: hook {'installed' if name == 'install-hook' else 'removed'}"
            + (f"; backup at {backup}" if backup else "")
        )
    return 0
