-- Neovim 0.11+: with this plugin on 'runtimepath', `vim.lsp.enable("rewind_lsp")`
-- starts rewind-lsp on Claude Code transcripts (*.jsonl) with no setup() call.
-- setup() (lua/rewind_lsp/init.lua) adds logs, terminals and the commands.
return require("rewind_lsp").lsp_config()
