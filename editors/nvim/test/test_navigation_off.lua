-- setup({ inlay_hints = false, code_lens = false }): the plugin turns neither on.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  H.test("navigation off: a non-boolean inlay_hints is refused by name", function()
    local ok, err = pcall(require("rewind_lsp").setup, { cmd = H.cmd, inlay_hints = "no" })
    H.ok(not ok, "setup accepted inlay_hints = \"no\"")
    H.ok(tostring(err):find("rewind_lsp.setup: `inlay_hints` must be a boolean, got a string", 1, true), tostring(err))
  end)

  H.setup({ inlay_hints = false, code_lens = false })
  local buf = H.open(H.write_transcript())
  H.client(buf)
  H.wait_diagnostic(buf, "orphan-tool-use")

  H.test("navigation off: no code lenses fetched", function()
    vim.wait(1000)
    H.eq(#vim.lsp.codelens.get(buf), 0, "code lenses of the buffer")
  end)

  if vim.lsp.inlay_hint and vim.fn.has("nvim-0.10") == 1 then
    H.test("navigation off: inlay hints stay off", function()
      H.eq(vim.lsp.inlay_hint.is_enabled({ bufnr = buf }), false, "inlay hints enabled")
    end)
  end
end)
