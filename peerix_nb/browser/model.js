// @ts-check
// A page module's link with its widget model in the kernel (broadcast.js, browser_peer.js).

/**
 * The members of an anywidget model these modules use.
 * @typedef {object} WidgetModel
 * @property {(name: string, callback: (...args: any[]) => void) => void} on
 * @property {(name: string, callback: (...args: any[]) => void) => void} off
 * @property {(content: any, callbacks?: any, buffers?: ArrayBuffer[] | ArrayBufferView[]) => void} send
 * @property {(name: string) => any} get
 */

/**
 * Route the kernel's custom messages to `onMessage` and tell the kernel when this page goes
 * away (its views stop counting there); returns the undo, for initialize()'s clean-up.
 * @param {WidgetModel} model
 * @param {(msg: any, buffers: DataView[]) => void} onMessage
 * @param {(content: Record<string, any>) => void} send
 * @returns {() => void}
 */
export function followModel(model, onMessage, send) {
  model.on("msg:custom", onMessage);
  const bye = () => send({ type: "views", views: 0, unload: true });
  window.addEventListener("pagehide", bye);
  return () => {
    window.removeEventListener("pagehide", bye);
    model.off("msg:custom", onMessage);
  };
}
