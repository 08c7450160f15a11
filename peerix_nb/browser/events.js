// @ts-check
// A small event emitter with Peerix's group names: a handler on "connection" gets every
// "connection:*" event, "*" gets everything (the Python side's Emitter does the same).

/** A handler gets the event; a returned Promise that rejects is logged. @typedef {(event: any) => any} Handler */

export class Emitter {
  constructor() {
    /** @type {Map<string, { handler: Handler, once: boolean }[]>} */
    this._handlers = new Map();
  }

  /**
   * Call `handler` for every event `name` ("group" for every "group:*", "*" for all).
   * @template {Handler} H
   * @param {string} name
   * @param {H} handler
   * @returns {H}
   */
  on(name, handler) {
    if (!this._handlers.has(name)) this._handlers.set(name, []);
    this._handlers.get(name).push({ handler, once: false });
    return handler;
  }

  /**
   * As on(), for the next such event only.
   * @template {Handler} H
   * @param {string} name
   * @param {H} handler
   * @returns {H}
   */
  once(name, handler) {
    if (!this._handlers.has(name)) this._handlers.set(name, []);
    this._handlers.get(name).push({ handler, once: true });
    return handler;
  }

  /** Remove `handler` from `name` (every handler of `name` if none). @param {string} name @param {Handler} [handler] */
  off(name, handler) {
    if (!handler) {
      this._handlers.delete(name);
      return;
    }
    const entries = this._handlers.get(name);
    if (!entries) return;
    const left = entries.filter((e) => e.handler !== handler);
    if (left.length) this._handlers.set(name, left);
    else this._handlers.delete(name);
  }

  /** @param {string} name @param {any} event */
  emit(name, event) {
    const group = name.split(":")[0];
    const keys = group === name ? ["*", name] : ["*", name, group];
    for (const key of keys) {
      const entries = this._handlers.get(key);
      if (!entries) continue;
      if (entries.some((e) => e.once)) {
        const left = entries.filter((e) => !e.once);
        if (left.length) this._handlers.set(key, left);
        else this._handlers.delete(key);
      }
      for (const { handler } of [...entries]) {
        try {
          const result = handler(event);
          if (result && typeof result.catch === "function") {
            result.catch((/** @type {unknown} */ error) => console.error(`peerix: handler for ${name} failed`, error));
          }
        } catch (error) {
          // A user's handler must never break the library.
          console.error(`peerix: handler for ${name} failed`, error);
        }
      }
    }
  }
}
