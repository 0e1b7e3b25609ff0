#!/bin/sh
# A text capture (tmux capture-pane) of Neovim showing the broken transcript
# with its diagnostic (virtual text) and the hover float, saved into
# editors/nvim/test/out/ (git-ignored). Usage: capture.sh NVIM_BINARY NAME
set -u
here=$(cd "$(dirname "$0")" && pwd)
plugin=$(dirname "$here")
nvim=$1
out_dir=$here/out
out=$out_dir/$2.txt
if ! command -v tmux >/dev/null 2>&1; then
  echo "SKIP capture: tmux not found (apt-get install tmux)"
  exit 0
fi
mkdir -p "$out_dir"
ready=$(mktemp)
: >"$ready"
session=rewind-nvim-capture-$$
tmux -L "$session" new-session -d -x 140 -y 46 -s "$session" \
  "RW_READY='$ready' RW_PLUGIN='$plugin' '$nvim' -u NONE -i NONE -n --cmd 'let &runtimepath = \$RW_PLUGIN . \",\" . &runtimepath' -S '$here/capture_screen.lua'"
i=0
while [ ! -s "$ready" ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
state=$(cat "$ready")
tmux -L "$session" capture-pane -p -t "$session" >"$out"
tmux -L "$session" kill-server
rm -f "$ready"
if [ "$state" != "ready" ]; then
  echo "FAIL capture: Neovim did not show the diagnostic and hover (${state:-no answer}); screen in $out"
  exit 1
fi
if ! grep -q '"toolu_01ABC".*tool_use toolu_01ABC has no tool_r' "$out"; then
  echo "FAIL capture: no virtual text after the tool_use block on the screen; see $out"
  exit 1
fi
if ! grep -q "tool_use without a tool_result in the next message.*messages.1" "$out"; then
  echo "FAIL capture: no hover float on the screen; see $out"
  exit 1
fi
echo "PASS capture: $out: $("$nvim" --version | head -n 1) showing the broken transcript, its orphan-tool-use diagnostic as virtual text at the end of line 2 and the hover float on the tool_use block"
