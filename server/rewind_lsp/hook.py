"""The Claude Code hook: stop a broken session before the API refuses it.

`rewind-lsp hook` reads the hook's JSON on stdin. On `UserPromptSubmit` a session whose live
conversation no longer pairs is blocked with the exact fix; on `SessionStart` (resume) the
user is told. It fails open: any internal error, unreadable file or unknown input exits 0
and is logged, because a hook must never break Claude Code.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from .findings import Finding, Severity
from .paths import user_log_dir

# Imported where used, not here: every prompt pays for this module's imports, and the rules
# (re2, TOML), the log scanner and the rewinder are needed only when something is wrong;
# shlex, stat and re only to install the hook, traceback only when it fails; json (and re, which
# it pulls in) and redact only when there is something to say: msgspec reads the payload.

HOOK_MARK = "rewind-lsp hook"
MAX_LISTED = 5


def _log(message: str) -> None:
    try:
        folder = user_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "hook.log", "a", encoding="utf-8") as f:
            from .redact import redact

            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {redact(message)}\n")
    except OSError:
        pass


MAIN = "main conversation"  # the label check.py gives the live chain


def _findings(path: str) -> list[Finding]:
    from .index import check_cached, states_dir

    return check_cached(path, states_dir())[0]


def live_errors(found: list[Finding]) -> list[Finding]:
    """Errors of the conversation Claude Code sends next (the main chain only)."""
    return [f for f in found if f.severity == Severity.ERROR and f.facts.get("conversation") == MAIN]


def subagent_files(transcript_path: str) -> list[str]:
    """The session's subagent transcripts: `<session id>/subagents/agent-*.jsonl` beside it."""
    folder = os.path.join(os.path.splitext(transcript_path)[0], "subagents")
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith("agent-") and n.endswith(".jsonl"))
    except OSError:
        return []
    return [p for p in (os.path.join(folder, n) for n in names) if os.path.isfile(p)]


def subagent_errors(transcript_path: str) -> list[tuple[str, Finding]]:
    """Errors of the subagents' live conversations (history in them is information, never an error)."""
    out: list[tuple[str, Finding]] = []
    for agent in subagent_files(transcript_path):
        try:
            found = _findings(agent)
        except OSError as exc:  # one unreadable subagent file must not hide the others
            _log(f"skipped subagent transcript {agent}: {exc}")
            continue
        out.extend((agent, f) for f in found if f.severity == Severity.ERROR)
    return out


def _describe(path: str, errors: list[Finding], agent_errors: Sequence[tuple[str, Finding]] = ()) -> str:
    items = [f"- {f.rule} at line {f.start.line}: {f.message}" for f in errors]
    home = os.path.dirname(path)
    items += [
        f"- {f.rule} at line {f.start.line} of the subagent transcript {os.path.relpath(agent, home)}: {f.message}"
        for agent, f in agent_errors
    ]
    lines = items[:MAX_LISTED]
    if len(items) > MAX_LISTED:
        lines.append(f"- … and {len(items) - MAX_LISTED} more")
    return "\n".join(lines)


def _fix_text(path: str, codex: bool = False) -> str:
    from .advice import rewind_command

    return (
        "Fix it without losing the session (the original file stays untouched):\n"
        f"  {rewind_command(path, '--mode', 'patch')}\n"
        f"then run the `{'codex resume' if codex else 'claude --resume'} <new id>` line it prints."
    )


# What the next request would be refused with, in each agent's words.
_WOULD_FAIL = {
    False: "Claude Code's next request would fail with 'API Error: 400 due to tool use concurrency issues'",
    True: "Codex's next request would fail with 'No tool output found for function call …' (the Responses API "
          "refuses the history)",
}


def _agent_fix_text(agents: list[str]) -> str:
    # In place (with a backup): the subagent keeps its file name, which is how it is found again.
    from .advice import rewind_command

    commands = "\n".join(f"  {rewind_command(a, '--mode', 'patch', '--in-place')}" for a in agents)
    return f"Repair the subagent transcript (a timestamped backup of the original is kept):\n{commands}"


def live_recorded_400(found: list[Finding]) -> list[Finding]:
    """The tool-use 400 recorded on the live conversation while every call pairs (a warning, the
    same verdict `check` gives: docs/CONTRACT.md)."""
    return [f for f in found if f.rule == "tool-use-concurrency-400"
            and f.severity == Severity.WARNING and f.facts.get("conversation") == MAIN]


def _recorded_400_text(path: str, found: list[Finding]) -> str:
    from .advice import rewind_command

    f = found[0]
    return (f"rewind-lsp: line {f.start.line}: {f.message}.\n"
            f"  {rewind_command(path)}\n    (cuts before the prompt whose request was refused)\n"
            f"  {rewind_command(path, '--mode', 'patch')}\n    (keeps everything but the recorded error)")


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
    found = _findings(path)  # once per prompt: both verdicts below read the same findings
    errors = live_errors(found)
    # Codex runs the same hook (its hooks.json; docs/CONTRACT.md); its findings say whose session it is.
    codex = any(f.facts.get("agent") == "codex" for f in errors)
    agent_errors = subagent_errors(path)
    if not errors and not agent_errors:
        recorded = live_recorded_400(found)
        if not recorded:
            return 0, "", ""
        import json

        from .redact import redact

        # Not blocked: every call pairs, so the next request may well go through; the user is told.
        message = redact(_recorded_400_text(path, recorded))
        out: dict[str, Any] = {"systemMessage": message}
        if event == "SessionStart":
            out["hookSpecificOutput"] = {"hookEventName": "SessionStart", "additionalContext": message}
        return 0, json.dumps(out), ""
    import json

    from .redact import redact

    what = (
        f"rewind-lsp: this session's tool calls no longer pair up, so {_WOULD_FAIL[codex]}.\n"
        + _describe(path, errors, agent_errors)
    )
    fix = _fix_text(path, codex) if errors else _agent_fix_text(sorted({a for a, _ in agent_errors}))
    from .advice import already_repaired

    note = already_repaired(path) if errors else None
    if note:
        # One copy per broken state: resume the one already written, never write another.
        fix = f"rewind-lsp {note}\nResume that session instead (the original is untouched)."
        auto_repair = False
    if event == "SessionStart":
        message = redact(what + "\n" + fix)  # shown to the user and added to the model's context
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
    if auto_repair and errors:
        from .rewind import RewindError, rewind

        try:
            result = rewind(path, mode="patch")
        except (RewindError, OSError) as exc:
            _log(f"auto-repair of {path} failed: {exc}")
            # Said to the user too: a failure only in hook.log would leave them blocked, not knowing why.
            fix = f"rewind-lsp tried to repair it and could not: {exc}\n" + fix
        else:
            from .advice import resume_command

            resume, note = resume_command(result.session_id, result.cwd, path)
            reason = (
                what + f"\nrewind-lsp repaired it into a new session (the original is untouched): {result.path}\n"
                f"Resume that one instead:\n  {resume}" + (f"\n  ({note})" if note else "")
            )
            return 0, json.dumps({"decision": "block", "reason": redact(reason)}), ""
    return 0, json.dumps({"decision": "block", "reason": redact(what + "\n" + fix)}), ""


def run_hook(stdin_text: str, auto_repair: bool = False) -> int:
    try:
        payload = msgspec.json.decode(stdin_text) if stdin_text.strip() else {}
        if not isinstance(payload, dict):
            _log(f"ignored hook input that is not an object: {stdin_text[:200]!r}")
            return 0
        status, out, err = decide(payload, auto_repair)
    except Exception:
        import traceback

        _log("hook failed open:\n" + traceback.format_exc())
        return 0
    if out:
        print(out)
    if err:
        print(err, file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """`rewind-lsp hook [--auto-repair]` without the rest of the CLI: what a launcher that wants
    the hook's own start-up cost only (no rules, rewinder or report imports) can call."""
    args = sys.argv[1:] if argv is None else list(argv)
    return run_hook(sys.stdin.read() if not sys.stdin.isatty() else "", "--auto-repair" in args)


# --- installing into Claude Code's settings -----------------------------------------------------


class SettingsError(Exception):
    pass


def settings_path(scope: str, codex: bool = False) -> Path:
    from .check import claude_config_dir, codex_sessions_dir

    if codex:
        # Codex reads hooks from hooks.json beside its config.toml: $CODEX_HOME's, or a project's .codex.
        if scope == "local":
            raise SettingsError("Codex has no local hooks file: use --user ($CODEX_HOME/hooks.json) or --project "
                                "(.codex/hooks.json)")
        return (codex_sessions_dir().parent if scope == "user" else Path.cwd() / ".codex") / "hooks.json"
    if scope == "user":
        return claude_config_dir() / "settings.json"
    if scope == "local":
        return Path.cwd() / ".claude" / "settings.local.json"
    return Path.cwd() / ".claude" / "settings.json"


def hook_command(auto_repair: bool = False) -> str:
    """The settings' command: this installation (not whichever `rewind-lsp` PATH finds), quoted."""
    from .invocation import command

    return command("hook", "--auto-repair") if auto_repair else command("hook")


def _is_ours(hook: Any) -> bool:
    cmd = hook.get("command") if isinstance(hook, dict) else None
    if not isinstance(cmd, str):
        return False
    import shlex

    try:
        words = shlex.split(cmd)
    except ValueError:
        words = cmd.split()
    for i, word in enumerate(words[:-1]):
        if words[i + 1] == "hook" and (
            os.path.basename(word) in ("rewind-lsp", "rewind-lsp.exe")
            or (word == "rewind_lsp" and i > 0 and words[i - 1] == "-m")
        ):
            return True
    return False


def _refuse_number(text: str) -> float:
    """Python reads 1e400 as inf and would write it back as `Infinity`, which Node (Claude Code)
    cannot parse: refuse instead of changing the number."""
    value = float(text)
    if value in (float("inf"), float("-inf")) or value != value:
        raise SettingsError(f"the number {text} is out of range (it would be written back as Infinity)")
    return value


def _refuse_constant(text: str) -> float:
    raise SettingsError(f"{text} is not JSON (Claude Code cannot read it)")


def _read_settings(path: Path) -> dict[str, Any]:
    import json

    if not path.exists():
        return {}
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 text (byte {exc.start}); fix it first, nothing was changed") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text, parse_float=_refuse_number, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); fix it first, nothing was changed"
        ) from None
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}; fix it first, nothing was changed") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the settings are not a JSON object; nothing was changed")
    return data


def _serialize(data: dict[str, Any]) -> bytes:
    import json
    import re

    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    # json.loads keeps a lone surrogate escape ("\ud800") as a lone surrogate, which UTF-8 cannot
    # encode: write it back as the escape it was read from. (A valid pair is one code point here.)
    text = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode("utf-8")


def _open_new(path: Path, mode: int) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)


def _backup(path: Path, content: bytes, mode: int) -> Path:
    """A copy of `content` under a name no earlier backup has (O_EXCL): an install and an
    uninstall in the same second must not overwrite the pristine copy."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        backup = path.with_name(f"{path.name}.{stamp}{f'.{n}' if n else ''}.bak")
        try:
            fd = _open_new(backup, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(content)
        return backup
    raise SettingsError(f"{path}: too many backups from this second; nothing was changed")


def _write_settings(path: Path, data: dict[str, Any]) -> Path | None:
    """Write `data` to `path` atomically, through a symlink (a dotfiles setup keeps its link),
    keeping the file's mode; the old content goes to a backup first. A read-only file is refused."""
    import stat

    payload = _serialize(data)  # before touching anything: a failure here changes nothing
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    try:
        st = os.stat(target)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    else:
        mode = stat.S_IMODE(st.st_mode)
        # os.access alone says yes to root; the mode bits say what the user meant.
        if not mode & 0o222 or not os.access(target, os.W_OK):
            raise SettingsError(f"{path}: the file is read-only; nothing was changed")
        backup = _backup(path, target.read_bytes(), mode)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{time.monotonic_ns()}.tmp")
    fd = _open_new(tmp, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return backup


def install(scope: str, auto_repair: bool = False, codex: bool = False) -> tuple[Path, bool, Path | None]:
    """Merge our hook entries; returns (settings file, changed?, backup). Codex's hooks.json takes the
    same `hooks` object as Claude Code's settings (events, matcher groups, command handlers)."""
    path = settings_path(scope, codex)
    data = _read_settings(path)
    if data.get("hooks") is None:
        data["hooks"] = {}
    hooks = data["hooks"]
    if not isinstance(hooks, dict):
        raise SettingsError(f'{path}: "hooks" is not an object; nothing was changed')
    command = hook_command(auto_repair)
    changed = False
    for event, matcher in (("UserPromptSubmit", None), ("SessionStart", "resume")):
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise SettingsError(f'{path}: "hooks.{event}" is not a list; nothing was changed')
        # Entries that are not what Claude Code documents (a number, a string) are left as found.
        lists = [g["hooks"] for g in groups if isinstance(g, dict) and isinstance(g.get("hooks"), list)]
        mine = [h for hs in lists for h in hs if _is_ours(h)]
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


def uninstall(scope: str, codex: bool = False) -> tuple[Path, bool, Path | None]:
    path = settings_path(scope, codex)
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
    p = sub.add_parser("hook", help="Claude Code (or Codex) hook: block a prompt when the session is broken "
                       "(reads JSON on stdin)")
    p.add_argument(
        "--auto-repair",
        action="store_true",
        help="repair a broken session into a new one (patch mode) and say which to resume",
    )
    p.set_defaults(func=lambda args: run_hook(sys.stdin.read() if not sys.stdin.isatty() else "", args.auto_repair))

    for name, fn in (("install-hook", install), ("uninstall-hook", uninstall)):
        p = sub.add_parser(name, help=f"{name.split('-')[0]} the hook in Claude Code's settings.json "
                           "(or Codex's hooks.json)")
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
        p.add_argument("--codex", action="store_true", help="Codex CLI's hooks.json instead "
                       "($CODEX_HOME/hooks.json, or .codex/hooks.json with --project)")
        if name == "install-hook":
            p.add_argument("--auto-repair", action="store_true", help="install the hook with --auto-repair")
        p.set_defaults(func=lambda args, fn=fn, name=name: _settings_command(args, fn, name))


def _settings_command(args: Any, fn: Any, name: str) -> int:
    scope = args.scope or "user"
    try:
        if name == "install-hook":
            path, changed, backup = fn(scope, args.auto_repair, args.codex)
        else:
            path, changed, backup = fn(scope, args.codex)
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
    if args.codex and name == "install-hook":
        note = codex_hooks_note(path)
        if note:
            print(note)
    return 0


def codex_hooks_note(hooks_file: Path) -> str | None:
    """What to add to Codex's config.toml when it does not run hooks yet (they are behind a feature
    flag); None when it does. The file is the user's: it is read, never written."""
    import tomllib

    config = hooks_file.with_name("config.toml")
    try:
        features = tomllib.loads(config.read_text(encoding="utf-8")).get("features")
    except FileNotFoundError:
        features = None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"{config}: could not read it ({exc}); Codex runs hooks only with `codex_hooks = true` under [features]"
    if isinstance(features, dict) and features.get("codex_hooks") is True:
        return None
    if isinstance(features, dict):  # a second [features] table would be a TOML error
        return f"Codex runs hooks only when they are turned on: add `codex_hooks = true` under [features] in {config}"
    return (f"Codex runs hooks only when they are turned on: add these two lines to {config}:\n"
            "  [features]\n  codex_hooks = true")


if __name__ == "__main__":  # `python -m rewind_lsp.hook`: the hook without the CLI's imports
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C, or Claude Code cancelling the hook: as `rewind-lsp hook` does
        sys.exit(130)
