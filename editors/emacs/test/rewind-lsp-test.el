;;; rewind-lsp-test.el --- Eglot + rewind-lsp end to end, in emacs --batch  -*- lexical-binding: t -*-

;; Run by test/run.sh:
;;   emacs --batch -l rewind-lsp-test.el -f ert-run-tests-batch-and-exit
;; The Eglot configuration under test is the elisp block of ../README.md.
;; In batch mode `eglot-ensure' never starts a server (it waits for a command
;; loop), Flymake never runs its first check and idle timers (Eglot's
;; didChange) never fire, so the tests start Eglot directly, call
;; `flymake-start' and send didChange themselves.

(require 'package)
(package-initialize)
(require 'ert)
(require 'cl-lib)
(require 'subr-x)
(require 'eglot)
(require 'flymake)

(defconst rewind-test-dir
  (file-name-directory (or load-file-name buffer-file-name)))
(defconst rewind-test-repo
  (expand-file-name "../../.." rewind-test-dir))
(defconst rewind-test-server
  (or (getenv "REWIND_LSP_SERVER")
      (expand-file-name ".venv/bin/rewind-lsp" rewind-test-repo)))

;; Scratch folders: nothing touches the real home folder.
(defconst rewind-test-tmp (make-temp-file "rewind-lsp-emacs" t))
(defconst rewind-test-claude (expand-file-name "claude" rewind-test-tmp))
(defconst rewind-test-work (expand-file-name "work" rewind-test-tmp))
(setenv "CLAUDE_CONFIG_DIR" rewind-test-claude)
(setenv "REWIND_LSP_LOG_DIR" (expand-file-name "logs" rewind-test-tmp))
(setq user-emacs-directory (file-name-as-directory (expand-file-name "emacs.d" rewind-test-tmp)))
(add-hook 'kill-emacs-hook (lambda () (delete-directory rewind-test-tmp t)))

;; The server on PATH, as the README's configuration expects.
(let ((bin (file-name-directory rewind-test-server)))
  (setenv "PATH" (concat bin path-separator (getenv "PATH")))
  (push bin exec-path))

(defun rewind-test-readme-config ()
  "The elisp block that follows the marker comment in README.md."
  (with-temp-buffer
    (insert-file-contents (expand-file-name "../README.md" rewind-test-dir))
    (goto-char (point-min))
    (search-forward "rewind-lsp-eglot-config")
    (search-forward "```elisp\n")
    (let ((start (point)))
      (search-forward "\n```")
      (buffer-substring-no-properties start (match-beginning 0)))))

(with-temp-buffer
  (insert (rewind-test-readme-config))
  (eval-buffer))

(defconst rewind-test-session "11111111-1111-4111-8111-111111111111")
(defconst rewind-test-transcript-lines
  '("{\"type\":\"user\",\"uuid\":\"u1\",\"parentUuid\":null,\"sessionId\":\"11111111-1111-4111-8111-111111111111\",\"message\":{\"role\":\"user\",\"content\":\"list files\"}}"
    "{\"type\":\"assistant\",\"uuid\":\"a1\",\"parentUuid\":\"u1\",\"sessionId\":\"11111111-1111-4111-8111-111111111111\",\"message\":{\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_01ABC\",\"name\":\"Bash\",\"input\":{\"command\":\"ls\"}}]}}"
    "{\"type\":\"user\",\"uuid\":\"u2\",\"parentUuid\":\"a1\",\"sessionId\":\"11111111-1111-4111-8111-111111111111\",\"message\":{\"role\":\"user\",\"content\":\"hello?\"}}")
  "The minimal broken transcript of docs/CONTRACT.md.")
(defconst rewind-test-400
  "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.")

(defun rewind-test-write (file lines)
  (make-directory (file-name-directory file) t)
  (with-temp-file file
    (insert (mapconcat #'identity lines "\n") "\n"))
  file)

(defun rewind-test-bytes (file)
  (with-temp-buffer
    (set-buffer-multibyte nil)
    (insert-file-contents-literally file)
    (buffer-string)))

(defun rewind-test-wait (what pred &optional seconds)
  "Wait up to SECONDS (default 20) for PRED to return non-nil; return it."
  (let ((deadline (+ (float-time) (or seconds 20)))
        value)
    (while (and (not (setq value (funcall pred)))
                (< (float-time) deadline))
      (accept-process-output nil 0.1))
    (or value (ert-fail (format "timed out waiting for %s" what)))))

(defun rewind-test-open (file)
  "Visit FILE, start Eglot as `eglot-ensure' would, return the buffer."
  (let ((buf (find-file-noselect file)))
    (with-current-buffer buf
      (unless (eglot-current-server)
        (apply #'eglot (eglot--guess-contact)))
      (rewind-test-wait "Eglot to manage the buffer"
                        (lambda () (and eglot--managed-mode (eglot-current-server)))))
    buf))

(defun rewind-test-diagnostic (code)
  "Wait for a Flymake diagnostic of rule CODE in the current buffer."
  (rewind-test-wait
   (format "a Flymake diagnostic %s" code)
   (lambda ()
     (flymake-start)
     (cl-find-if (lambda (d) (string-match-p (regexp-quote (format "[%s]" code))
                                             (flymake-diagnostic-text d)))
                 (flymake-diagnostics)))))

(defun rewind-test-lsp-diag (diag)
  (cdr (assoc 'eglot-lsp-diag (eglot--diag-data diag))))

(defun rewind-test-hover-text (pos)
  (save-excursion
    (goto-char pos)
    (let* ((hover (jsonrpc-request (eglot-current-server) :textDocument/hover
                                   (eglot--TextDocumentPositionParams)))
           (contents (plist-get hover :contents)))
      (cond ((stringp contents) contents)
            ((plist-get contents :value))
            (t (format "%S" contents))))))

(defun rewind-test-titles (actions)
  (mapcar (lambda (a) (plist-get a :title)) actions))

;; Fixtures: one transcript and one log, opened once and shared by the tests.

(defvar rewind-test--transcript nil "(FILE . ORIGINAL-BYTES) of the transcript.")

(defun rewind-test-transcript ()
  "Visit the contract's broken transcript, Eglot managing it; return the buffer."
  (unless rewind-test--transcript
    (let ((file (rewind-test-write
                 (expand-file-name (format "projects/-tmp-demo/%s.jsonl" rewind-test-session)
                                   rewind-test-claude)
                 rewind-test-transcript-lines)))
      (setq rewind-test--transcript (cons file (rewind-test-bytes file)))))
  (rewind-test-open (car rewind-test--transcript)))

(defun rewind-test-log ()
  "Visit a terminal log with the 400 on line 3, Eglot managing it; return the buffer."
  (let ((file (expand-file-name "session.log" rewind-test-work)))
    (unless (file-exists-p file)
      (rewind-test-write file (list "$ claude" "> refactor the parser" rewind-test-400 "> ")))
    (rewind-test-open file)))

(ert-deftest rewind-lsp-transcript-diagnostic ()
  "orphan-tool-use (Error) through Flymake, at the tool_use block on line 2."
  (with-current-buffer (rewind-test-transcript)
    (should (eq major-mode 'claude-transcript-mode))
    (should (eq (eieio-object-class (eglot-current-server)) 'rewind-lsp-server))
    (let* ((diag (rewind-test-diagnostic "orphan-tool-use"))
           (beg (flymake-diagnostic-beg diag))
           (lsp (rewind-test-lsp-diag diag)))
      (should (= (line-number-at-pos beg) 2))
      (should (string-prefix-p "{\"type\":\"tool_use\""
                               (save-excursion
                                 (goto-char beg)
                                 (buffer-substring-no-properties beg (line-end-position)))))
      (should (eq (flymake-diagnostic-type diag) 'eglot-error))
      (should (equal (plist-get lsp :code) "orphan-tool-use"))
      (should (equal (plist-get lsp :source) "rewind-lsp")))))

(ert-deftest rewind-lsp-transcript-hover ()
  "Hover over the finding names the tool_use id."
  (with-current-buffer (rewind-test-transcript)
    (let ((diag (rewind-test-diagnostic "orphan-tool-use")))
      (should (string-match-p "toolu_01ABC"
                              (rewind-test-hover-text (1+ (flymake-diagnostic-beg diag))))))))

(ert-deftest rewind-lsp-transcript-code-actions ()
  "The contract's quickfix titles, with the Flymake diagnostic as context."
  (with-current-buffer (rewind-test-transcript)
    (let* ((diag (rewind-test-diagnostic "orphan-tool-use"))
           (actions (eglot-code-actions (flymake-diagnostic-beg diag) (flymake-diagnostic-end diag)))
           (titles (rewind-test-titles actions)))
      (dolist (title '("Show fix steps" "Rewind session (drops 2 of 3 messages)"
                       "Repair session (keeps everything)" "Copy resume command"))
        (should (member title titles)))
      (dolist (a actions)
        (should (equal (plist-get a :kind) "quickfix"))))))

(ert-deftest rewind-lsp-transcript-rewind ()
  "Rewind writes a valid new session beside the untouched original."
  (with-current-buffer (rewind-test-transcript)
    (let* ((file (car rewind-test--transcript))
           (original (cdr rewind-test--transcript))
           (diag (rewind-test-diagnostic "orphan-tool-use"))
           (actions (eglot-code-actions (flymake-diagnostic-beg diag) (flymake-diagnostic-end diag)))
           (action (cl-find "Rewind session (drops 2 of 3 messages)" actions
                            :key (lambda (a) (plist-get a :title)) :test #'equal))
           (command (plist-get action :command))
           (kill-ring nil)
           ;; As `eglot-code-actions' runs the chosen action.
           (result (eglot-execute-command (eglot-current-server)
                                          (intern (plist-get command :command))
                                          (plist-get command :arguments)))
           (new (plist-get result :path)))
      (should (stringp new))
      (should (file-exists-p new))
      (should-not (equal new file))
      (should (equal (file-name-directory new) (file-name-directory file)))
      (should (equal (plist-get result :resumeCommand)
                     (concat "claude --resume " (plist-get result :sessionId))))
      (should (= 0 (call-process rewind-test-server nil nil nil "check" new)))
      (should (equal (rewind-test-bytes file) original))
      ;; The README's methods: resume command copied, new session shown.
      (should (equal (car kill-ring) (plist-get result :resumeCommand)))
      (rewind-test-wait "a window showing the new session"
                        (lambda () (let ((buf (find-buffer-visiting new)))
                                     (and buf (get-buffer-window buf))))))))

;; The transcript as a document: imenu (documentSymbol) and xref (definition).

(defconst rewind-test-nav-lines
  '("{\"type\":\"user\",\"uuid\":\"u1\",\"parentUuid\":null,\"sessionId\":\"33333333-3333-4333-8333-333333333333\",\"message\":{\"role\":\"user\",\"content\":\"list the files\"}}"
    "{\"type\":\"assistant\",\"uuid\":\"a1\",\"parentUuid\":\"u1\",\"sessionId\":\"33333333-3333-4333-8333-333333333333\",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_01LS\",\"name\":\"Bash\",\"input\":{\"command\":\"ls\"}}],\"id\":\"msg_1\"}}"
    "{\"type\":\"user\",\"uuid\":\"u2\",\"parentUuid\":\"a1\",\"sessionId\":\"33333333-3333-4333-8333-333333333333\",\"message\":{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_01LS\",\"content\":\"ok\"}]}}"
    "{\"type\":\"assistant\",\"uuid\":\"a2\",\"parentUuid\":\"u2\",\"sessionId\":\"33333333-3333-4333-8333-333333333333\",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Here they are.\"}],\"id\":\"msg_2\"}}"
    "{\"type\":\"user\",\"uuid\":\"u3\",\"parentUuid\":\"a2\",\"sessionId\":\"33333333-3333-4333-8333-333333333333\",\"message\":{\"role\":\"user\",\"content\":\"now run the tests\"}}"
    "{\"type\":\"assistant\",\"uuid\":\"a3\",\"parentUuid\":\"u3\",\"sessionId\":\"33333333-3333-4333-8333-333333333333\",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_01RUN\",\"name\":\"Bash\",\"input\":{\"command\":\"npm test\"}}],\"id\":\"msg_3\"}}"
    "{\"type\":\"user\",\"uuid\":\"u4\",\"parentUuid\":\"a3\",\"sessionId\":\"33333333-3333-4333-8333-333333333333\",\"message\":{\"role\":\"user\",\"content\":\"hello?\"}}")
  "Two prompts answered, the third interrupting an unanswered Bash call.")

(defun rewind-test-imenu-names (index)
  "Every name in the imenu INDEX (Eglot 1.9 groups by kind and container), depth first."
  (let (names)
    (dolist (entry index (nreverse names))
      (push (substring-no-properties (car entry)) names)
      (when (consp (cdr entry))
        (setq names (append (reverse (rewind-test-imenu-names (cdr entry))) names))))))

(ert-deftest rewind-lsp-transcript-imenu-and-xref ()
  "imenu lists the prompts and their tool calls; xref-find-definitions on a
tool_result's id lands on its tool_use block."
  (let ((buf (rewind-test-open
              (rewind-test-write
               (expand-file-name "projects/-tmp-nav/33333333-3333-4333-8333-333333333333.jsonl"
                                 rewind-test-claude)
               rewind-test-nav-lines))))
    (with-current-buffer buf
      (let ((names (rewind-test-imenu-names (funcall imenu-create-index-function))))
        (dolist (name '("list the files" "Bash ls ✓" "Here they are." "now run the tests"
                        "Bash npm test ✗" "hello?"))
          (should (member name names))))
      (goto-char (point-min))
      (forward-line 2)
      (search-forward "toolu_01LS")
      (backward-char 3)
      (let ((xref-prompt-for-identifier nil))
        (call-interactively #'xref-find-definitions))
      (should (eq (current-buffer) buf))
      (should (= (line-number-at-pos) 2))
      (should (looking-at-p (regexp-quote "{\"type\":\"tool_use\",\"id\":\"toolu_01LS\""))))))

(ert-deftest rewind-lsp-log-diagnostic ()
  "tool-use-concurrency-400 (Error) on the log's 400 line, with hover and fix steps."
  (with-current-buffer (rewind-test-log)
    (should (eq major-mode 'claude-log-mode))
    (let* ((diag (rewind-test-diagnostic "tool-use-concurrency-400"))
           (beg (flymake-diagnostic-beg diag)))
      (should (= (line-number-at-pos beg) 3))
      (should (eq (flymake-diagnostic-type diag) 'eglot-error))
      (should (string-match-p "400" (rewind-test-hover-text (1+ beg))))
      (should (member "Show fix steps"
                      (rewind-test-titles (eglot-code-actions beg (flymake-diagnostic-end diag))))))))

(ert-deftest rewind-lsp-log-edit ()
  "A 400 typed into the log buffer is found (didChange)."
  (with-current-buffer (rewind-test-log)
    (rewind-test-diagnostic "tool-use-concurrency-400")
    (goto-char (point-max))
    (insert rewind-test-400 "\n")
    (let ((line (1- (line-number-at-pos (point-max)))))
      (eglot--signal-textDocument/didChange) ; what Eglot's idle timer does
      (rewind-test-wait
       (format "a second 400 finding on line %d" line)
       (lambda ()
         (flymake-start)
         (member line (mapcar (lambda (d) (line-number-at-pos (flymake-diagnostic-beg d)))
                              (flymake-diagnostics))))))))

(ert-deftest rewind-lsp-settings ()
  "The README's settings answer workspace/configuration for section rewind-lsp."
  (with-current-buffer (rewind-test-log)
      (let ((answer (eglot-handle-request (eglot-current-server) 'workspace/configuration
                                          :items [(:section "rewind-lsp")])))
        (should (equal (plist-get (aref answer 0) :notifications) t))
        (should (equal (plist-get (aref answer 0) :severity) '(:orphan-tool-result "warning"))))))

;; Timing of Eglot's synchronous connect, for deciding whether the server's early
;; `initialize' answer (server/rewind_lsp/lsp/early.py) pays: `eglot' blocks Emacs
;; until `initialize' is answered (up to `eglot-sync-connect' seconds), then the
;; buffer's didOpen goes out and the diagnostics follow.  Each run starts a fresh
;; server for a transcript in its own folder; REWIND_LSP_TIMING_RUNS (default 1)
;; runs per variant, in turns.  The figures go to the log as "timing:" lines.

(defun rewind-test-time-start (early dir)
  "Start Eglot on a broken transcript in DIR with REWIND_LSP_EARLY_INITIALIZE=EARLY.
Return (CONNECT-SECONDS . DIAGNOSTICS-SECONDS), both from just before the server starts."
  (let* ((process-environment (cons (concat "REWIND_LSP_EARLY_INITIALIZE=" early) process-environment))
         (file (rewind-test-write (expand-file-name (format "%s.jsonl" rewind-test-session) dir)
                                  rewind-test-transcript-lines))
         (buf (find-file-noselect file)))
    (unwind-protect
        (with-current-buffer buf
          (should-not (eglot-current-server))
          (let* ((start (float-time))
                 (connected (progn (apply #'eglot (eglot--guess-contact))
                                   (should (eglot-current-server))
                                   (- (float-time) start))))
            (rewind-test-diagnostic "orphan-tool-use")
            (cons connected (- (float-time) start))))
      (with-current-buffer buf
        (when (eglot-current-server)
          (eglot-shutdown (eglot-current-server))))
      (kill-buffer buf))))

(ert-deftest rewind-lsp-timing-eglot-connect ()
  "Server start -> Eglot connected (sync connect returned) -> first diagnostics, early answer on and off."
  (let ((runs (max 1 (string-to-number (or (getenv "REWIND_LSP_TIMING_RUNS") "1"))))
        (times (list (cons "1" nil) (cons "0" nil))))
    (dotimes (i runs)
      (dolist (variant times)
        (let ((dir (expand-file-name (format "timing-%s-%d" (car variant) i) rewind-test-work)))
          (push (rewind-test-time-start (car variant) dir) (cdr variant)))))
    (dolist (variant times)
      (let ((connects (mapcar #'car (cdr variant)))
            (diagnostics (mapcar #'cdr (cdr variant))))
        (message "timing: REWIND_LSP_EARLY_INITIALIZE=%s, best of %d: start -> eglot connected %.0f ms, -> first diagnostics %.0f ms (all runs: %s)"
                 (car variant) runs (* 1000 (apply #'min connects)) (* 1000 (apply #'min diagnostics))
                 (mapconcat (lambda (c) (format "%.0f/%.0f" (* 1000 (car c)) (* 1000 (cdr c))))
                            (reverse (cdr variant)) " "))
        (dolist (c (cdr variant))
          (should (<= (car c) (cdr c))))))))

(provide 'rewind-lsp-test)
;;; rewind-lsp-test.el ends here
