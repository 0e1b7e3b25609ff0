"""The persistent cache of check states: the CLI's answers are the same with it, without it
(`--no-cache`) and over a pool of processes, whatever state the cache folder is in (corrupt,
foreign, written by two processes at once, a symlink, unwritable); it holds no conversation text,
and is keyed by the release and the rule set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from core_support import CLI, SID, Builder, broken, compacted, run_cli, text, turn

from rewind_lsp import __version__
from rewind_lsp.findings import Finding, Position, Severity
from rewind_lsp.index import (
    FORMAT,
    check_saved,
    read_saved,
    rules_digest,
    shipped_rules_dir,
    state_file,
)
from rewind_lsp.rules import builtin_rules_dir, load_rules

LOG_400 = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.\n"
SECRET_PROMPT = "the launch codes are 0000 and nobody may know"
SECRET_OUTPUT = "tool output that must stay in the transcript only"


def project(root: Path) -> Path:
    """A Claude projects folder: broken sessions of every kind, compacted healthy ones, a subagent
    transcript, a terminal log."""
    folder = root / "projects" / "-tmp-project"
    for i, name in enumerate(["orphan-tool-use", "orphan-tool-result", "duplicate-tool-use-id", "pending",
                              "sidechain", "tool-result-not-first"]):
        broken(name).write(folder / f"{i:08d}-1111-4111-8111-111111111111.jsonl")
    for i in range(4):
        b = Builder(session_id=f"2222222{i}-2222-4222-8222-222222222222")
        compacted(b, 2 + i)
        b.user(SECRET_PROMPT)
        b.tool_turn([f"toolu_01SEC{i}"])
        b.lines[-1]["message"]["content"][0]["content"] = SECRET_OUTPUT
        b.assistant(text("done"))
        b.write(folder / f"{b.session_id}.jsonl")
    agent = Builder()
    turn(agent, "toolu_01AG")
    agent.write(folder / "00000000-1111-4111-8111-111111111111" / "subagents" / "agent-a1.jsonl")
    (root / "terminal.log").write_text("starting\n" + LOG_400)
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return project(tmp_path / "claude")


def env_for(tmp_path: Path, corpus: Path, cache: Path | None = None) -> dict[str, str]:
    return {"CLAUDE_CONFIG_DIR": str(corpus), "REWIND_LSP_CACHE_DIR": str(cache or tmp_path / "cache")}


def both(corpus: Path, env: dict[str, str], *flags: str) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """(`check --format json` over the folder, the main job in JSON): exit code, stdout, stderr."""
    c = run_cli("check", "--format", "json", *flags, str(corpus), env=env)
    m = run_cli("--format", "json", *flags, env=env)
    return (c.returncode, c.stdout, c.stderr), (m.returncode, m.stdout, m.stderr)


def reference(tmp_path: Path, corpus: Path) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    return both(corpus, env_for(tmp_path, corpus, tmp_path / "unused"), "--no-cache", "--jobs", "1")


def states(cache: Path) -> list[Path]:
    return sorted((cache / "index").glob("*.state"))


def transcripts(corpus: Path) -> list[Path]:
    return sorted(corpus.rglob("*.jsonl"))


def test_cached_uncached_and_pool_give_the_same_answers(tmp_path: Path, corpus: Path) -> None:
    want = reference(tmp_path, corpus)
    assert want[0][0] == 1 and want[1][0] == 1 and json.loads(want[0][1])  # something to find
    env = env_for(tmp_path, corpus)
    assert both(corpus, env, "--jobs", "1") == want  # writes the states
    assert len(states(tmp_path / "cache")) == len(transcripts(corpus))
    assert both(corpus, env, "--jobs", "1") == want  # reads them
    # (With the cache, so few bytes are checked here without a pool: below POOL_FROM_BYTES.)
    assert both(corpus, env, "--jobs", "2") == want
    assert both(corpus, env_for(tmp_path, corpus, tmp_path / "cache2"), "--jobs", "3") == want
    assert both(corpus, env, "--jobs", "2", "--no-cache") == want  # a pool


def test_a_pool_writing_and_reading_states_gives_the_serial_answers(tmp_path: Path, corpus: Path) -> None:
    from rewind_lsp.batch import check_files
    from rewind_lsp.check import discover

    files = list(discover([str(corpus)]))
    serial = check_files(files, None, 1, None)
    assert any(a.findings for a in serial)
    cache = tmp_path / "cache" / "index"
    for round_ in ("writes", "reads"):
        pooled = check_files(files, None, 2, cache, pool_from_bytes=0)
        assert [(a.findings, a.problem) for a in pooled] == [(a.findings, a.problem) for a in serial], round_
        assert [a.wrote for a in pooled] == [round_ == "writes" and p.endswith(".jsonl") for p in files]
    assert len(states(tmp_path / "cache")) == len(transcripts(corpus))
    grown = transcripts(corpus)[0]
    with grown.open("a") as f:
        f.write('{"type":"summary","summary":"a title","leafUuid":"nowhere"}\n')
    pooled = check_files(files, None, 2, cache, pool_from_bytes=0)
    assert [a.findings for a in pooled] == [a.findings for a in check_files(files, None, 1, None)]
    assert [a.wrote for a in pooled] == [p == str(grown) for p in files]  # only the grown one saved again


def test_a_second_process_reads_only_the_state_and_what_was_appended(tmp_path: Path, corpus: Path) -> None:
    env = env_for(tmp_path, corpus)
    assert run_cli("check", str(corpus), env=env).returncode == 1  # another process saves the states
    cache = tmp_path / "cache" / "index"
    for path in transcripts(corpus):
        _, state, wrote = check_saved(str(path), cache)
        assert state.stats.reused and state.stats.bytes_read == 0 and not wrote, path
    grown = transcripts(corpus)[-1]
    extra = (json.dumps({"type": "user", "uuid": "u-extra", "parentUuid": None, "sessionId": SID,
                         "message": {"role": "user", "content": "one more"}}) + "\n").encode()
    with grown.open("ab") as f:
        f.write(extra)
    want = reference(tmp_path, corpus)
    assert both(corpus, env) == want
    _, state, _ = check_saved(str(grown), cache)
    assert state.stats.reused  # the CLI saved the grown file's state after reading the new line


def test_appended_lines_are_all_a_cached_check_reads(tmp_path: Path, corpus: Path) -> None:
    cache = tmp_path / "cache" / "index"
    path = transcripts(corpus)[-1]
    run_cli("check", str(path), env=env_for(tmp_path, corpus))
    extra = b'{"type":"summary","summary":"a title","leafUuid":"nowhere"}\n'
    with path.open("ab") as f:
        f.write(extra)
    _, state, wrote = check_saved(str(path), cache)
    assert (state.stats.bytes_read, state.stats.full_reads, wrote) == (len(extra), 0, True)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "one-byte-flipped", "empty", "folder"])
def test_a_damaged_state_file_is_ignored_and_rebuilt(tmp_path: Path, corpus: Path, damage: str) -> None:
    want = reference(tmp_path, corpus)
    env = env_for(tmp_path, corpus)
    both(corpus, env)
    for file in states(tmp_path / "cache"):
        data = file.read_bytes()
        if damage == "garbage":
            file.write_bytes(os.urandom(len(data)))
        elif damage == "truncated":
            file.write_bytes(data[: len(data) // 2])
        elif damage == "one-byte-flipped":
            file.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
        elif damage == "empty":
            file.write_bytes(b"")
        else:
            file.unlink()
            file.mkdir()
    assert both(corpus, env) == want
    if damage != "folder":
        assert all(read_saved(f) is not None for f in states(tmp_path / "cache"))  # rebuilt
    assert both(corpus, env) == want


def forged(file: Path, **changes: object) -> None:
    """Rewrite a valid state file with some fields changed and a valid digest: well formed, but
    not this release's (or lying about what it holds)."""
    import hashlib

    read = read_saved(file)
    assert read is not None
    saved = msgspec.structs.replace(read[0], **changes)
    payload = msgspec.msgpack.encode(saved)
    file.write_bytes(hashlib.blake2b(payload, digest_size=16).digest() + payload)


def lie() -> list[Finding]:
    p = Position(1, 1, 0)
    return [Finding("orphan-tool-use", Severity.ERROR, "a finding no check made", p, p, "toolu_01LIE")]


@pytest.mark.parametrize("field", ["version", "format", "rules", "path"])
def test_a_state_file_of_another_release_or_rule_set_is_not_trusted(tmp_path: Path, corpus: Path,
                                                                    field: str) -> None:
    want = reference(tmp_path, corpus)
    env = env_for(tmp_path, corpus)
    both(corpus, env)
    other = {"version": "0.0.1-other", "format": FORMAT + 1, "rules": "set-0000", "path": "/elsewhere.jsonl"}
    for file in states(tmp_path / "cache"):
        forged(file, **{field: other[field]}, findings=lie(), closed_findings=[])
    assert both(corpus, env) == want
    for file in states(tmp_path / "cache"):
        read = read_saved(file)
        assert read is not None and read[0].version == __version__ and read[0].format == FORMAT  # rebuilt


def test_no_cache_neither_reads_nor_writes_the_cache(tmp_path: Path, corpus: Path) -> None:
    env = env_for(tmp_path, corpus)
    want = reference(tmp_path, corpus)
    both(corpus, env)
    for file in states(tmp_path / "cache"):
        forged(file, findings=lie(), closed_findings=[])  # valid for this release: the cache trusts it
    cached = run_cli("check", "--format", "json", str(corpus), env=env)
    assert "a finding no check made" in cached.stdout
    assert both(corpus, env, "--no-cache") == want
    fresh = tmp_path / "never"
    assert both(corpus, env_for(tmp_path, corpus, fresh), "--no-cache") == want
    assert not fresh.exists()


def test_two_processes_writing_the_cache_at_once(tmp_path: Path, corpus: Path) -> None:
    want = reference(tmp_path, corpus)[0]
    env = {**os.environ, **env_for(tmp_path, corpus)}
    exe = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "rewind_lsp"]
    runs = [subprocess.Popen([*exe, "check", "--format", "json", "--jobs", jobs, str(corpus)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for jobs in ("1", "2", "1", "2")]
    for proc in runs:
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out, err) == want
    assert len(states(tmp_path / "cache")) == len(transcripts(corpus))
    assert all(read_saved(f) is not None for f in states(tmp_path / "cache"))
    assert not [p for p in (tmp_path / "cache" / "index").iterdir() if p.name.startswith(".state-")]
    assert both(corpus, env_for(tmp_path, corpus))[0] == want


def lock(folder: Path, locked: bool) -> bool:
    """Make `folder` unwritable (for root too: the immutable attribute), or writable again."""
    if os.geteuid() != 0:
        folder.chmod(0o500 if locked else 0o700)
        return True
    done = subprocess.run(["chattr", "+i" if locked else "-i", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "a-file", "unwritable"])
def test_an_odd_cache_folder_changes_nothing_and_says_nothing(tmp_path: Path, corpus: Path, kind: str) -> None:
    cache = tmp_path / "odd-cache"
    target = tmp_path / "real-cache"
    env = env_for(tmp_path, corpus, cache)
    if kind == "symlink":
        target.mkdir()
        cache.symlink_to(target)
    elif kind == "dangling-symlink":
        cache.symlink_to(tmp_path / "nowhere")
    elif kind == "a-file":
        cache.write_text("not a folder")
    else:
        both(corpus, env)  # states saved; then neither they nor the folder can change
        with transcripts(corpus)[-1].open("a") as f:
            f.write('{"type":"summary","summary":"a title","leafUuid":"nowhere"}\n')
        if not lock(cache / "index", True):
            pytest.skip("no way to make a folder unwritable here")
    want = reference(tmp_path, corpus)
    try:
        assert both(corpus, env) == want
        assert both(corpus, env) == want
    finally:
        if kind == "unwritable":
            lock(cache / "index", False)
    if kind == "symlink":
        assert len(states(target)) == len(transcripts(corpus))  # a symlinked cache folder is used


def test_the_cache_holds_no_conversation_text(tmp_path: Path, corpus: Path) -> None:
    both(corpus, env_for(tmp_path, corpus))
    files = list((tmp_path / "cache" / "index").iterdir())
    assert files
    for file in files:
        data = file.read_bytes()
        for secret in (SECRET_PROMPT, SECRET_OUTPUT, "first prompt: look at the repo", "There are 12 tests."):
            assert secret.encode() not in data, (file, secret)


def test_the_key_covers_the_release_and_the_rule_set(tmp_path: Path) -> None:
    path = str(tmp_path / f"{SID}.jsonl")
    folder = tmp_path / "rules"
    folder.mkdir()
    rule = ('id = "my-rule"\ntitle = "mine"\nseverity = "warning"\npatterns = ["custom failure"]\n'
            'hover = "{hover}"\n')
    (folder / "my-rule.toml").write_text(rule.format(hover="first"))
    (folder / "my-rule.md").write_text("fix it\n")
    shipped, custom = load_rules(), load_rules([folder])
    (folder / "my-rule.toml").write_text(rule.format(hover="second"))
    changed = load_rules([folder])
    digests = {rules_digest(None), rules_digest(shipped), rules_digest(custom), rules_digest(changed)}
    assert len(digests) == 4
    assert rules_digest(load_rules([folder])) == rules_digest(changed)  # the same rules, the same key
    files = {state_file(tmp_path, path, r) for r in (None, custom, changed)}
    assert len(files) == 3


def test_a_custom_rule_set_keeps_its_own_states(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "my-rule.toml").write_text('id = "my-rule"\ntitle = "mine"\npatterns = ["custom failure"]\n'
                                         'hover = "mine"\n')
    (folder / "my-rule.md").write_text("fix it\n")
    p = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    env = {"REWIND_LSP_CACHE_DIR": str(tmp_path / "cache")}
    plain = run_cli("check", "--format", "json", str(p), env=env)
    custom = run_cli("check", "--format", "json", "--rule-dir", str(folder), str(p), env=env)
    assert plain.stdout == custom.stdout and plain.returncode == custom.returncode == 1
    assert len(states(tmp_path / "cache")) == 2
    again = run_cli("check", "--format", "json", "--rule-dir", str(folder), str(p), env=env)
    assert (again.returncode, again.stdout) == (custom.returncode, custom.stdout)


def test_the_shipped_rules_folder_is_the_loaders() -> None:
    assert shipped_rules_dir() == builtin_rules_dir()  # the hook's copy, which imports no loader



def test_a_large_transcript_checked_alone_is_split_when_nothing_is_saved(tmp_path: Path) -> None:
    """`--jobs` keeps its meaning for one huge file: with no saved state it is split at compactions
    (a split check keeps no state); once a state is saved, it is read from there."""
    from rewind_lsp.batch import check_files
    from rewind_lsp.check import check_transcript_file
    from rewind_lsp.parallel import MIN_PART

    b = Builder()
    for s in range(4):
        if s:
            b.compact()
        for t in range(60):
            b.user(f"step {s}.{t}")
            call = b.assistant({"type": "tool_use", "id": f"toolu_{s}_{t}", "name": "Bash", "input": {}})
            if (s, t) != (1, 5):
                b.result(f"toolu_{s}_{t}", "x" * 80_000, of=call)
            b.assistant(text("done"))
    path = b.write(tmp_path / f"{SID}.jsonl")
    assert path.stat().st_size >= 2 * MIN_PART
    whole = check_transcript_file(str(path)).findings
    cache = tmp_path / "cache" / "index"
    assert check_files([str(path)], None, 2, cache)[0].findings == whole
    assert not cache.exists()  # split: nothing saved
    assert check_files([str(path)], None, 1, cache)[0].findings == whole
    assert len(list(cache.glob("*.state"))) == 1
    assert check_files([str(path)], None, 2, cache)[0].findings == whole
    _, state, _ = check_saved(str(path), cache)
    assert state.stats.reused


def test_the_batch_s_canonical_path_is_realpath_through_linked_folders_and_files(tmp_path: Path) -> None:
    """The main job resolves each folder once; the key of a saved state must still be the realpath."""
    from rewind_lsp.batch import canonical

    real = tmp_path / "real" / "p"
    real.mkdir(parents=True)
    (real / "a.jsonl").write_text("{}\n")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    (real / "b.jsonl").symlink_to(real / "a.jsonl")
    folders: dict[str, str] = {}
    for p in [tmp_path / "linked" / "p" / "a.jsonl", tmp_path / "linked" / "p" / "b.jsonl",
              tmp_path / "real" / "p" / "a.jsonl", tmp_path / "linked" / "p" / ".." / "p" / "a.jsonl",
              tmp_path / "linked" / "p" / "missing.jsonl"]:
        assert canonical(str(p), folders) == os.path.realpath(p), p
