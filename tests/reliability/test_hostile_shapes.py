"""Crafted or unusual transcript shapes are checked and rewound in near-linear time: each shape
(written by benchmarks/hostile.py, about a tenth of the size the issue measured) is checked, and
rewound in both modes, at N and 2N lines or blocks, best of three runs each, and doubling the size
must not triple the time."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from rewind_lsp.check import check_transcript_file
from rewind_lsp.findings import Severity
from rewind_lsp.rewind import RewindResult, rewind

_HOSTILE = Path(__file__).resolve().parents[2] / "benchmarks" / "hostile.py"


def _hostile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hostile", _HOSTILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


hostile = _hostile()


def _best_time(path: Path) -> tuple[float, int]:
    best, count = float("inf"), 0
    # The machine is shared (CI runs suites side by side): the checker's own CPU time, best of three,
    # is what grows with the input; wall time also grows with whatever else runs.
    for _ in range(3):
        started = time.process_time()
        count = len(check_transcript_file(str(path)).findings)
        best = min(best, time.process_time() - started)
    return best, count


def _growth(tmp_path: Path, shape: str, n: int) -> tuple[float, float, int, int]:
    small, small_count = _best_time(hostile.write_shape(shape, n, tmp_path / f"{shape}-{n}.jsonl"))
    large, large_count = _best_time(hostile.write_shape(shape, 2 * n, tmp_path / f"{shape}-{2 * n}.jsonl"))
    return small, large, small_count, large_count


# shape, N, findings at N (the findings grow with the shape: the check did its work)
LINEAR = [
    ("unanswered-uses", 2_000, 2_000),
    ("pending-uses", 2_000, 2_000),
    ("replied-uses", 2_000, 2_000),
    ("lost-parent-blocks", 5_000, 0),
    ("lost-parent-progress", 20_000, 0),
    ("rewritten-blocks", 5_000, 0),
    ("server-split-late", 1_000, 1_000),
    ("many-children", 5_000, None),
    ("sidechain-children", 5_000, None),
    ("results-of-one", 5_000, None),
    ("orphan-result-lines", 10_000, 10_000),
    ("tiny-lines", 50_000, 0),
]


@pytest.mark.parametrize(("shape", "n", "expected"), LINEAR, ids=[s for s, _, _ in LINEAR])
def test_shape_is_checked_in_near_linear_time(tmp_path: Path, shape: str, n: int, expected: int | None) -> None:
    small, large, small_count, large_count = _growth(tmp_path, shape, n)
    if expected is not None:
        assert small_count == expected, small_count
        assert large_count == 2 * expected, large_count
    # A floor of 0.15 s: below it a loaded machine's noise is the ratio (the quadratic paths this guards
    # against took seconds at these sizes).
    assert large / max(small, 0.15) < 3, (shape, small, large)


# Many findings inside one line: the line's content array is walked once for all of its blocks
# (locate.element_spans) and its UTF-16 columns are worked out once (locate.Columns).
ONE_LINE = [("orphan-results", 200), ("shared-id", 100)]


@pytest.mark.parametrize(("shape", "n"), ONE_LINE, ids=[s for s, _ in ONE_LINE])
def test_many_findings_in_one_line_are_placed_in_near_linear_time(tmp_path: Path, shape: str, n: int) -> None:
    small, large, _, _ = _growth(tmp_path, shape, n)
    assert large / max(small, 0.02) < 3, (shape, small, large)


# --- rewind ------------------------------------------------------------------------------------------
# `rewind-lsp rewind` is `rewind_lsp.rewind.rewind`: the check of the source, the plan, the copy
# streamed through it and the check of the copy. Each shape with a fault (or, for a shape that pairs,
# with a break appended after it: `hostile.append_break`) is rewound in both modes at N and 2N, best
# of three by CPU time, into a fresh folder each time.


def _best_rewind(path: Path, mode: str, out: Path) -> tuple[float, RewindResult]:
    best, result = float("inf"), None
    for k in range(3):
        folder = out / f"{mode}-{k}"
        folder.mkdir(parents=True)
        started = time.process_time()
        result = rewind(path, mode, out=folder)
        best = min(best, time.process_time() - started)
        # The work was done: the copy is a whole session that checks clean.
        assert not [f for f in check_transcript_file(str(result.path)).findings if f.severity == Severity.ERROR]
        if k < 2:
            shutil.rmtree(folder)
    assert result is not None
    return best, result


def _session(tmp_path: Path, shape: str, n: int, broken: bool) -> Path:
    path = hostile.write_shape(shape, n, hostile.session_file(tmp_path / f"{shape}-{n}"))
    if not broken:
        hostile.append_break(path)
    return path


# shape, N, does the shape itself break the conversation (else a break is appended after it)
REWIND = [
    ("orphan-results", 500, True),
    ("orphan-result-lines", 5_000, True),
    ("unanswered-uses", 1_000, True),
    ("shared-id", 5_000, True),
    ("one-message-uses", 5_000, True),
    ("results-of-one", 2_500, True),
    ("server-split-late", 1_000, True),
    ("many-children", 5_000, False),
    ("lost-parent-blocks", 5_000, False),
    ("rewritten-blocks", 5_000, False),
    ("tiny-lines", 20_000, False),  # a fiftieth: its rewinds are the slowest per line
]


@pytest.mark.parametrize("mode", ["truncate", "patch"])
@pytest.mark.parametrize(("shape", "n", "broken"), REWIND, ids=[s for s, _, _ in REWIND])
def test_shape_is_rewound_in_near_linear_time(tmp_path: Path, shape: str, n: int, broken: bool, mode: str) -> None:
    small, small_result = _best_rewind(_session(tmp_path, shape, n, broken), mode, tmp_path / "out-small")
    large, large_result = _best_rewind(_session(tmp_path, shape, 2 * n, broken), mode, tmp_path / "out-large")
    if mode == "patch":
        # Every line is kept, and each fault of the shape is mended: twice as many at 2N.
        assert small_result.dropped_messages == large_result.dropped_messages == 0
        if broken and shape != "server-split-late":
            assert len(large_result.fixed) >= 2 * len(small_result.fixed) - 2, (small_result.fixed[:3], shape)
    else:
        assert small_result.dropped_messages > 0 and large_result.dropped_messages > 0
    # A floor of 0.3 s (the check's is 0.15 s): a rewind is two checks and a copy, and below it this VM's
    # noise alone made one ratio 3.1 (0.17 -> 0.53 s, where a quiet rerun gives 0.16 -> 0.34 s). The
    # quadratic paths this guards against took seconds at these sizes (patch of 100,000 orphan lines: 17 s).
    assert large / max(small, 0.3) < 3, (shape, mode, small, large)
