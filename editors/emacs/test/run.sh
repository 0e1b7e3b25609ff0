#!/bin/sh
# Eglot + rewind-lsp end to end in `emacs --batch` (Debian: emacs-nox, elpa-eglot).
# Needs the repo venv (.venv/bin/rewind-lsp; REWIND_LSP_SERVER overrides it).
# VERBOSE=1 prints Emacs' whole output.
set -u
here=$(cd "$(dirname "$0")" && pwd)
emacs=${EMACS:-emacs}
server=${REWIND_LSP_SERVER:-$(cd "$here/../../.." && pwd)/.venv/bin/rewind-lsp}
if ! command -v "$emacs" >/dev/null 2>&1; then
  echo "emacs not found (apt-get install emacs-nox elpa-eglot)"; echo "emacs: 0 passed, 1 failed"; exit 1
fi
if [ ! -x "$server" ]; then
  echo "server not found: $server (run scripts/setup)"; echo "emacs: 0 passed, 1 failed"; exit 1
fi
export REWIND_LSP_SERVER="$server"

echo "$("$emacs" --version | head -n 1); server $("$server" --version 2>&1)"
log=$(mktemp)
start=$(date +%s)
# Plain --batch (not -Q) so Debian's site-start makes elpa-eglot loadable.
timeout "${TEST_TIMEOUT:-300}" "$emacs" --batch -l "$here/rewind-lsp-test.el" \
  -f ert-run-tests-batch-and-exit >"$log" 2>&1 </dev/null
status=$?
passed=$(grep -cE '^ +passed +[0-9]+/[0-9]+' "$log")
failed=$(grep -cE '^ +FAILED +[0-9]+/[0-9]+' "$log")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
  echo "FAIL: emacs exited with status $status"
fi
if [ "$failed" -gt 0 ] || [ "${VERBOSE:-0}" = 1 ]; then
  grep -v '^\[stderr\]' "$log"
else
  grep -E '^ +passed +[0-9]+/[0-9]+|^Ran |^timing: ' "$log"
fi
rm -f "$log"
echo "time: $(( $(date +%s) - start ))s"
echo "emacs: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
