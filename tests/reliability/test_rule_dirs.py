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
