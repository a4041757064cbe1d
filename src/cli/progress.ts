/** Where progress lines go: a writable with `write(string)`, normally process.stderr. */
export interface ProgressSink {
  write(chunk: string): unknown;
}

/** Prints `[uvmctl] <message>` progress lines (on stderr, so stdout stays the report). */
export class Progress {
  readonly #sink: ProgressSink | undefined;

  /** @param sink where lines go; undefined = quiet. */
  constructor(sink: ProgressSink | undefined) {
    this.#sink = sink;
  }

  line(message: string): void {
    this.#sink?.write(`[uvmctl] ${message}\n`);
  }
}
