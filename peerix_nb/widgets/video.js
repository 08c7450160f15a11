// VideoView front end (anywidget ESM, no build step).
//
// The kernel pushes JPEG frames as binary buffers of custom messages ({type: "frame", seq}).
// Each page decodes a frame once (createImageBitmap, no object URLs to revoke), draws it on
// every view of the widget, then acknowledges its seq: the kernel keeps at most 2 frames
// unacknowledged. A frame that arrives while another is decoding replaces the waiting one, so
// a slow page drops frames instead of queueing them. Views announce themselves ("rendered")
// and report their count when they go, so the kernel pushes only while someone watches.
//
// Sound (a MediaStream with audio): audio.js's player, made when the first chunk of sound
// arrives; each view gets its mute toggle and level meter along the bottom of the picture.

import { createAudioPlayer } from "./audio.js";

const FPS_WINDOW_MS = 1000;

function newId() {
  try {
    return crypto.randomUUID();
  } catch {
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  }
}

function makeView(el) {
  const root = document.createElement("div");
  root.className = "peerix-video";
  root.dataset.frames = "0";
  root.dataset.status = "waiting";
  const canvas = document.createElement("canvas");
  canvas.className = "peerix-video-canvas";
  const title = document.createElement("div");
  title.className = "peerix-video-title";
  const stats = document.createElement("div");
  stats.className = "peerix-video-stats";
  stats.textContent = "– fps";
  const status = document.createElement("div");
  status.className = "peerix-video-status";
  root.append(canvas, title, stats, status);
  el.appendChild(root);
  return {
    root,
    draw(bitmap) {
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
        root.style.aspectRatio = `${bitmap.width} / ${bitmap.height}`;
      }
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
      root.classList.add("has-frame");
    },
    showStats(text, frames, fps, latency) {
      stats.textContent = text;
      root.dataset.frames = String(frames);
      root.dataset.fps = String(fps);
      root.dataset.latency = latency == null ? "" : String(latency);
    },
    showState(model) {
      const state = model.get("status");
      const message = model.get("message");
      root.dataset.status = state;
      title.textContent = model.get("title");
      title.hidden = !model.get("title");
      status.textContent = state === "live" ? "" : message ? `${state}: ${message}` : state;
      status.hidden = state === "live";
    },
  };
}

export default () => {
  const views = new Set();
  const frontend = newId(); // this page; the kernel counts views per page
  let model = null;
  let pending = null; // the newest frame not decoded yet: {msg, buffer}
  let decoding = false;
  let last = null; // the last decoded ImageBitmap (drawn on views that appear later)
  let frames = 0;
  let droppedHere = 0;
  let latency = null;
  let latencyKind = "";
  const drawTimes = [];
  let audio = null; // the sound's player in this page, once the kernel sends sound
  const detachAudio = new Map(); // view -> detach its audio controls

  function send(content) {
    try {
      model.send({ ...content, frontend });
    } catch {
      // the widget was closed: nothing to tell
    }
  }

  function fps() {
    const now = performance.now();
    while (drawTimes.length && now - drawTimes[0] > FPS_WINDOW_MS) drawTimes.shift();
    return drawTimes.length;
  }

  function refreshStats() {
    const rate = fps();
    const lat = latency == null ? "" : ` · ${Math.round(latency)} ms`;
    const text = `${rate} fps${lat}`;
    for (const view of views) view.showStats(text, frames, rate, latency);
    for (const view of views) view.root.title =
      `frames drawn: ${frames}, dropped in this page: ${droppedHere}` +
      (latency == null ? "" : `, latency (${latencyKind}): ${Math.round(latency)} ms`);
  }

  function ack(seq) {
    const delay = Number(model.get("ack_delay_ms")) || 0;
    if (delay > 0) setTimeout(() => send({ type: "ack", seq, delay }), delay);
    else send({ type: "ack", seq, delay: 0 });
  }

  async function decodeLoop() {
    if (decoding) return;
    decoding = true;
    try {
      while (pending) {
        const { msg, buffer } = pending;
        pending = null;
        let bitmap;
        try {
          bitmap = await createImageBitmap(new Blob([buffer], { type: "image/jpeg" }));
        } catch (error) {
          console.warn("peerix VideoView: undecodable frame", msg.seq, error);
          ack(msg.seq);
          continue;
        }
        if (last) last.close();
        last = bitmap;
        latency = msg.latency;
        latencyKind = msg.latency_kind;
        for (const view of views) view.draw(bitmap);
        frames += 1;
        drawTimes.push(performance.now());
        refreshStats();
        ack(msg.seq);
      }
    } finally {
      decoding = false;
    }
  }

  return {
    initialize(ctx) {
      model = ctx.model;
      const onMessage = (msg, buffers) => {
        if (msg && typeof msg.type === "string" && msg.type.startsWith("audio")) {
          if (!audio) {
            if (msg.type !== "audio") return; // nothing to end or ping before the first sound
            audio = createAudioPlayer(model, send);
            for (const view of views) detachAudio.set(view, audio.attach(view.root));
          }
          audio.handle(msg, buffers);
          return;
        }
        if (!msg || msg.type !== "frame" || !buffers || !buffers.length) return;
        // Only a page slower than another page of the same kernel gets here (the kernel sends
        // at most 2 unacknowledged frames): keep the newest; the next ack covers both.
        if (pending) droppedHere += 1;
        pending = { msg, buffer: buffers[0] };
        decodeLoop();
      };
      model.on("msg:custom", onMessage);
      const timer = setInterval(refreshStats, 500); // fps falls to 0 when frames stop
      return () => {
        clearInterval(timer);
        model.off("msg:custom", onMessage);
        if (audio) audio.destroy();
        audio = null;
        if (last) last.close();
        last = null;
        pending = null;
      };
    },
    render(ctx) {
      const view = makeView(ctx.el);
      const update = () => {
        view.showState(ctx.model);
        refreshStats();
      };
      ctx.model.on("change:status", update);
      ctx.model.on("change:message", update);
      ctx.model.on("change:title", update);
      update();
      views.add(view);
      if (audio) detachAudio.set(view, audio.attach(view.root));
      if (last) view.draw(last);
      refreshStats();
      send({ type: "rendered", views: views.size });
      return () => {
        ctx.model.off("change:status", update);
        ctx.model.off("change:message", update);
        ctx.model.off("change:title", update);
        views.delete(view);
        const detach = detachAudio.get(view);
        if (detach) detach();
        detachAudio.delete(view);
        send({ type: "views", views: views.size });
      };
    },
  };
};
