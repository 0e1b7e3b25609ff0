-- Sourced by test/capture.sh NVIM NAME navigation inside tmux: the
-- navigation transcript with its inlay hints (messages.N at column 0) and
-- code lenses (end of line) shown; writes "ready" or "timeout" to $RW_READY.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")
local function ready(word)
  local f = assert(io.open(vim.env.RW_READY, "w"))
  f:write(word)
  f:close()
end
vim.o.wrap = true
vim.o.number = true
H.setup()
local buf = H.open(H.write_nav_transcript())
local shown = vim.wait(30000, function()
  local lenses = vim.lsp.codelens.get(buf)
  return #lenses >= 2 and #vim.lsp.inlay_hint.get({ bufnr = buf }) >= #H.nav_lines
end, 50)
vim.cmd("redraw!")
vim.defer_fn(function() ready(shown and "ready" or "timeout") end, 500)
