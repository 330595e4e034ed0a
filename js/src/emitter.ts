/** A minimal typed event emitter (works the same in browsers and Node). */
export class Emitter<Events extends { [K in keyof Events]: (...args: any[]) => void }> {
  private handlers: { [K in keyof Events]?: Array<Events[K]> } = {};

  /** Register `fn` for `event`; returns a function that removes it. */
  on<K extends keyof Events>(event: K, fn: Events[K]): () => void {
    (this.handlers[event] ??= []).push(fn);
    return () => this.off(event, fn);
  }

  /** Like `on`, for the next event only. */
  once<K extends keyof Events>(event: K, fn: Events[K]): () => void {
    const wrapper = ((...args: unknown[]) => {
      off();
      (fn as (...a: unknown[]) => void)(...args);
    }) as Events[K];
    const off = this.on(event, wrapper);
    return off;
  }

  off<K extends keyof Events>(event: K, fn: Events[K]): void {
    const list = this.handlers[event];
    if (!list) return;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }

  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const list = this.handlers[event];
    if (!list) return;
    for (const fn of list.slice()) {
      try {
        (fn as (...a: unknown[]) => void)(...args);
      } catch (err) {
        // a failing listener must not break the client; report it asynchronously
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}
