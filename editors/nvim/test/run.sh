#!/bin/sh
# Run every editors/nvim/test/test_*.lua in a fresh `nvim --headless -u NONE`.
# Needs: nvim (0.7+) and the repo venv (.venv/bin/rewind-lsp, from scripts/setup).
# Env: NVIM (nvim binary), REWIND_LSP_SERVER (server path, default <repo>/.venv/bin/rewind-lsp),
#      TEST_TIMEOUT (seconds per file, default 180), VERBOSE=1 (print every line).
set -u
here=$(cd "$(dirname "$0")" && pwd)
plugin=$(dirname "$here")
nvim=${NVIM:-nvim}
limit=${TEST_TIMEOUT:-180}

if ! command -v "$nvim" >/dev/null 2>&1; then
  echo "nvim not found (apt-get install neovim)"; echo "nvim: 0 passed, 1 failed"; exit 1
fi
server=${REWIND_LSP_SERVER:-$(cd "$plugin/../.." && pwd)/.venv/bin/rewind-lsp}
if [ ! -x "$server" ]; then
  echo "server not found: $server (run scripts/setup)"; echo "nvim: 0 passed, 1 failed"; exit 1
fi

echo "$("$nvim" --version | head -n 1); server $("$server" --version 2>&1)"
passed=0
failed=0
start=$(date +%s)
for test in "$here"/test_*.lua; do
  name=$(basename "$test")
  log=$(mktemp)
  results=$(mktemp)
  RW_RESULTS=$results RW_PLUGIN=$plugin timeout "$limit" "$nvim" --headless -u NONE -i NONE -n \
    --cmd 'let &runtimepath = $RW_PLUGIN . "," . &runtimepath' \
    -S "$test" >"$log" 2>&1 </dev/null
  status=$?
  p=$(grep -c '^PASS ' "$results")
  f=$(grep -c '^FAIL ' "$results")
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1 # crashed or timed out before reporting
    echo "FAIL $name: nvim exited with status $status"
  fi
  sed "s|^|$name: |" "$results"
  if [ "$f" -gt 0 ] || [ "${VERBOSE:-0}" = 1 ]; then
    echo "--- $name output:"
    sed "s|^|  |" "$log"
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  rm -f "$log" "$results"
done
echo "time: $(( $(date +%s) - start ))s"
echo "nvim: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
