// A page module's link with its widget model in the kernel (broadcast.js, browser_peer.js).

/** Route the kernel's custom messages to `onMessage` and tell the kernel when this page goes
 *  away (its views stop counting there); returns the undo, for initialize()'s clean-up. */
export function followModel(model, onMessage, send) {
  model.on("msg:custom", onMessage);
  const bye = () => send({ type: "views", views: 0, unload: true });
  window.addEventListener("pagehide", bye);
  return () => {
    window.removeEventListener("pagehide", bye);
    model.off("msg:custom", onMessage);
  };
}
