#!/usr/bin/env bash
# Unit tests (node --test), then the end-to-end test in code-server + headless Chromium.
# Run scripts/setup.sh first. Ends with `vscode: N passed, M failed`; exits non-zero on any failure.
set -uo pipefail

EXT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$EXT_DIR/test-output"
cd "$EXT_DIR"
mkdir -p "$OUT"
rm -f "$OUT"/*.tap

passed=0
failed=0
count() { sed -n "s/^# $1 \\([0-9]*\\)\$/\\1/p" "$2" 2>/dev/null | tail -1; }
tally() { # tally NAME TAP_FILE: add a TAP report's counts (cancelled counts as failed), or one failure if none
  local pass fail cancelled
  pass=$(count pass "$2")
  fail=$(count fail "$2")
  cancelled=$(count cancelled "$2")
  if [[ -z $pass || -z $fail ]]; then
    echo "vscode: $1 produced no test report" >&2
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + pass))
  failed=$((failed + fail + ${cancelled:-0}))
}
run_tests() { # run_tests NAME FILES...: node's test runner, spec output on stdout, TAP into test-output/NAME.tap
  local name=$1
  shift
  node --test --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$OUT/$name.tap" "$@"
  tally "$name" "$OUT/$name.tap"
}

echo "==> type check and compile"
if npm run --silent typecheck && npm run --silent compile-tests; then
  echo "==> unit tests"
  run_tests unit out/test/*.test.js
  echo "==> end-to-end test (code-server + Chromium)"
  if npm run --silent package >"$OUT/package.log" 2>&1; then
    run_tests e2e out/e2e/vscode.e2e.js
  else
    cat "$OUT/package.log" >&2
    echo "vscode: building rewind-lsp.vsix failed" >&2
    failed=$((failed + 1))
  fi
else
  echo "vscode: type check or test compilation failed" >&2
  failed=$((failed + 1))
fi

echo "vscode: $passed passed, $failed failed"
((failed == 0))
