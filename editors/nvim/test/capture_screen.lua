-- Sourced by test/capture.sh inside tmux (not a test_*.lua: run.sh does not
-- run it). Opens the contract's broken transcript with the diagnostic shown
-- as virtual text, then the hover float on the tool_use block, and writes
-- "ready" (or "timeout") to $RW_READY for capture.sh.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")
local function ready(word)
  local f = assert(io.open(vim.env.RW_READY, "w"))
  f:write(word)
  f:close()
end
-- Virtual text (off by default on 0.11+) ends the wrapped line 2 on the
-- cursor's screen row, so the hover float below the cursor hides neither.
vim.diagnostic.config({ virtual_text = true, signs = true })
vim.o.wrap = true
-- Hints and lenses would move the virtual text off the cursor's row; the
-- navigation capture (capture_navigation.lua) shows them.
H.setup({ inlay_hints = false, code_lens = false })
local buf = H.open(H.write_transcript())
local ok_diag = vim.wait(30000, function() return H.diagnostics(buf, "orphan-tool-use")[1] ~= nil end, 50)
if not ok_diag then
  return ready("timeout")
end
local d = H.diagnostics(buf, "orphan-tool-use")[1]
vim.api.nvim_win_set_cursor(0, { d.lnum + 1, d.col + 2 })
vim.lsp.buf.hover()
local ok_float = vim.wait(15000, function()
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_config(win).relative ~= "" then
      return true
    end
  end
  return false
end, 50)
vim.defer_fn(function() ready(ok_float and "ready" or "timeout") end, 500)
