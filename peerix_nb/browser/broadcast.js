// @ts-check
// BroadcastChannelDriver front end (anywidget ESM): relays a kernel's signaling to and from
// this browser's BroadcastChannel(name), so kernels of notebooks open in one browser (and
// browser peers there) find each other without a server.
//
// Kernel -> page: {type: "post", key} + the message bytes; the page posts [key, bytes] on the
// channel (docs/PROTOCOL.md). Page -> kernel: whatever arrives on the channel for a key the kernel
// subscribed to (the synced `subscribed` list) goes back as {type: "recv", key} + bytes. Only the
// page the kernel chose ({type: "own", to}) opens the channel: two pages showing one kernel's
// widget would otherwise post every message twice and echo each other's posts back.

import { randomId } from "./ids.js";
import { followModel } from "./model.js";

/** @typedef {import("./model.js").WidgetModel} WidgetModel */

/** The bytes of a buffer, or null for anything else. @param {unknown} data @returns {Uint8Array | null} */
function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

function createWidget() {
  const frontend = randomId();
  /** @type {Set<{ update(): void }>} */
  const views = new Set();
  /** @type {WidgetModel} */
  let model = null;
  /** @type {BroadcastChannel | null} */
  let channel = null;
  let posted = 0;
  let received = 0;

  /** @param {Record<string, any>} content @param {Uint8Array[]} [buffers] */
  function send(content, buffers = []) {
    try {
      model.send({ ...content, frontend }, undefined, buffers);
    } catch {
      // closed widget
    }
  }

  function refresh() {
    for (const view of views) view.update();
  }

  function open() {
    if (channel) return;
    channel = new BroadcastChannel(model.get("name"));
    channel.onmessage = (event) => {
      const data = event.data;
      if (!Array.isArray(data) || data.length !== 2 || typeof data[0] !== "string") return;
      const bytes = bytesOf(data[1]);
      if (!bytes || !(model.get("subscribed") || []).includes(data[0])) return;
      received += 1;
      send({ type: "recv", key: data[0] }, [bytes.slice()]);
      refresh();
    };
  }

  function shut() {
    if (channel) channel.close();
    channel = null;
  }

  /** @param {Record<string, any>} msg @param {DataView[]} buffers */
  function onMessage(msg, buffers) {
    if (!msg) return;
    if (msg.type === "own") {
      if (msg.to === frontend) open();
      else shut();
      refresh();
    } else if (msg.type === "post" && channel && buffers && buffers.length) {
      channel.postMessage([msg.key, bytesOf(buffers[0]).slice()]);
      posted += 1;
      refresh();
    }
  }

  return {
    /** @param {{ model: WidgetModel }} ctx */
    initialize(ctx) {
      model = ctx.model;
      const unfollow = followModel(model, onMessage, send);
      return () => {
        unfollow();
        shut();
      };
    },
    /** @param {{ model: WidgetModel, el: HTMLElement }} ctx */
    render({ model: m, el }) {
      const root = document.createElement("div");
      root.className = "peerix-bc";
      el.appendChild(root);
      const view = {
        update() {
          const relaying = !!channel;
          root.dataset.state = relaying ? "relaying" : "idle";
          root.textContent = relaying
            ? `BroadcastChannel "${m.get("name")}" · relaying this kernel's signaling · ${posted} out · ${received} in`
            : `BroadcastChannel "${m.get("name")}" · ${m.get("status")}`;
        },
      };
      views.add(view);
      m.on("change:status", view.update);
      view.update();
      send({ type: "rendered", views: views.size });
      return () => {
        m.off("change:status", view.update);
        views.delete(view);
        send({ type: "views", views: views.size });
      };
    },
  };
}

// anywidget calls a default-exported function once per widget model: each model gets its own
// createWidget() state (as widgets/video.js does).
export default createWidget;
