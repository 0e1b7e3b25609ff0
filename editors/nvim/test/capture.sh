#!/bin/sh
# A text capture (tmux capture-pane) of Neovim saved into editors/nvim/test/out/
# (git-ignored). Usage: capture.sh NVIM_BINARY NAME [navigation]
# Default: the broken transcript with its diagnostic (virtual text) and the
# hover float (capture_screen.lua). `navigation`: the navigation transcript
# with inlay hints and code lenses (capture_navigation.lua, Neovim 0.10+).
set -u
here=$(cd "$(dirname "$0")" && pwd)
plugin=$(dirname "$here")
nvim=$1
out_dir=$here/out
out=$out_dir/$2.txt
mode=${3:-hover}
script=$here/capture_screen.lua
[ "$mode" = navigation ] && script=$here/capture_navigation.lua
if ! command -v tmux >/dev/null 2>&1; then
  echo "SKIP capture: tmux not found (apt-get install tmux)"
  exit 0
fi
mkdir -p "$out_dir"
ready=$(mktemp)
: >"$ready"
session=rewind-nvim-capture-$$
tmux -L "$session" new-session -d -x 140 -y 46 -s "$session" \
  "RW_READY='$ready' RW_PLUGIN='$plugin' '$nvim' -u NONE -i NONE -n --cmd 'let &runtimepath = \$RW_PLUGIN . \",\" . &runtimepath' -S '$script'"
i=0
while [ ! -s "$ready" ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
state=$(cat "$ready")
tmux -L "$session" capture-pane -p -t "$session" >"$out"
tmux -L "$session" kill-server
rm -f "$ready"
if [ "$mode" = navigation ]; then
  if [ "$state" != "ready" ]; then
    echo "FAIL capture: Neovim did not show the inlay hints and code lenses (${state:-no answer}); screen in $out"
    exit 1
  fi
  for want in 'messages.0 {"type":"user"' 'messages.1 → result line 3 {"type":"assistant"' \
      'messages.5 ✗ toolu_01RUN: no result {"type":"assistant"' 'Repair session (keeps everything)' \
      'Rewind to here (drops 3 messages)'; do
    if ! grep -qF "$want" "$out"; then
      echo "FAIL capture: no '$want' on the screen; see $out"
      exit 1
    fi
  done
  echo "PASS capture: $out: $("$nvim" --version | head -n 1) showing the navigation transcript with its messages.N inlay hints and the Repair / Rewind to here code lenses"
  exit 0
fi
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
