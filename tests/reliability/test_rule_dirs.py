"""`ruleDirs` entries that are no real folder of regular rule files are refused with a message; the
server goes on with the rest (and the shipped rules)."""

from __future__ import annotations

import os
from pathlib import Path

from rel_support import raw_server, wait_until


def test_bad_rule_folders_are_named_and_skipped(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo-dir"
    os.mkfifo(fifo)
    with_fifo = tmp_path / "rules-with-fifo"
    with_fifo.mkdir()
    os.mkfifo(with_fifo / "x.toml")
    a_file = tmp_path / "file-dir"
    a_file.write_text("")
    dirs = [str(fifo), str(with_fifo), str(a_file), "relative/rules", str(tmp_path / "missing"), "/dev/null"]
    with raw_server(tmp_path / "home", {"ruleDirs": dirs}) as srv:
        expected = [
            f"rewind-lsp: rule folder {fifo}: not a folder; it is not used",
            f"rewind-lsp: rule folder {with_fifo}: x.toml in it is not a regular file; it is not used",
            f"rewind-lsp: rule folder {a_file}: not a folder; it is not used",
            "rewind-lsp: rule folder relative/rules: not an absolute path; it is not used",
            f"rewind-lsp: rule folder {tmp_path / 'missing'}: No such file or directory; it is not used",
            "rewind-lsp: rule folder /dev/null: not a folder; it is not used",
        ]
        shown = wait_until(lambda: [m for m in srv.shown_messages() if "rule folder" in m] or None, 10)
        assert shown == expected
        assert srv.alive()


RULE = ('id = "team-deploy-failed"\ntitle = "deploy failed"\nhover = "h"\nseverity = "warning"\n'
        "patterns = ['DEPLOY FAILED']\n")


def test_a_rule_folder_from_settings_is_used_only_inside_the_workspace_or_home(tmp_path: Path) -> None:
    """A cloned project's settings can name any folder: one outside the workspace folders and the
    home folder (here /tmp's, and one reached through a link from inside) is refused; one inside
    the workspace is used (its rule fires on an open log)."""
    workspace = tmp_path / "srv"
    inside = workspace / "rules"
    outside = tmp_path / "elsewhere"
    for folder in (inside, outside):
        folder.mkdir(parents=True)
        (folder / "deploy.toml").write_text(RULE)
        (folder / "team-deploy-failed.md").write_text("fix")
    workspace.mkdir(exist_ok=True)
    linked = workspace / "linked-rules"
    os.symlink(outside, linked)
    with raw_server(workspace, {"ruleDirs": [str(inside), str(outside), str(linked)]}) as srv:
        log = workspace / "build.log"
        log.write_text("step 1\nDEPLOY FAILED\n")
        uri = srv.open(log, language="log")
        diags = srv.wait_notification(lambda n: n["method"] == "textDocument/publishDiagnostics"
                                      and n["params"]["uri"] == uri and n["params"]["diagnostics"], 10)
        shown = [m for m in srv.shown_messages() if "rule folder" in m]
    assert shown == [
        f"rewind-lsp: rule folder {outside}: outside the workspace folders and your home folder; it is not used",
        f"rewind-lsp: rule folder {linked}: outside the workspace folders and your home folder; it is not used",
    ]
    assert diags is not None
    assert [(d["code"], d["range"]["start"]["line"]) for d in diags["params"]["diagnostics"]] == [
        ("team-deploy-failed", 1)]
