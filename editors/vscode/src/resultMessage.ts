// The server's window/showMessage notifications while a Rewind/Repair runs (no `vscode` import).
//
// The server announces the written session in a window/showMessage (the words every editor shows)
// before it answers the command; VS Code would show that as a toast of its own, and the extension
// needs the same message with a "Copy resume command" button. So the extension holds the Info
// messages that arrive while such a command runs and, when its answer comes, shows the one that
// names the answer's resume command once, with the button; every other message is shown as is.

export interface ServerMessage {
  type: number;
  message: string;
}

/** LSP's MessageType.Info: errors and warnings are never held. */
export const INFO = 3;

export interface Released {
  /** The server's message naming the resume command, to show with the Copy button. */
  withButton: ServerMessage | undefined;
  /** Held messages to show now, as the server sent them, in arrival order. */
  others: ServerMessage[];
}

export class ResultMessages {
  private running = 0;
  private held: ServerMessage[] = [];

  /** A Rewind/Repair request is about to be sent. */
  begin(): void {
    this.running += 1;
  }

  /** Called for every server message: true when it is held (not to be shown now). */
  hold(message: ServerMessage): boolean {
    if (this.running === 0 || message.type !== INFO) return false;
    this.held.push(message);
    return true;
  }

  /** The request has been answered (`resume`: its resume command, if any). Messages held for other
   * requests still running stay held until the last one ends. */
  end(resume: string | undefined): Released {
    this.running = Math.max(0, this.running - 1);
    const index = resume === undefined ? -1 : this.held.findIndex((m) => m.message.includes(resume));
    const withButton = index >= 0 ? this.held.splice(index, 1)[0] : undefined;
    if (this.running > 0) return { withButton, others: [] };
    const others = this.held;
    this.held = [];
    return { withButton, others };
  }
}
