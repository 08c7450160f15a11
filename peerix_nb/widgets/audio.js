// AudioView front end, and the audio player VideoView shares (anywidget ESM, no build step).
//
// The kernel pushes 20 ms chunks of mono 48 kHz int16 PCM as binary buffers of custom messages
// ({type: "audio", pos, stamps}). One AudioContext per page serves every peerix widget (one
// "enable sound" click enables all); each widget gets one player per page (an AudioWorkletNode
// running audio_worklet.js, whose text the kernel embeds below: no network), drawn by every
// view of the widget. The page reports what it played back to the kernel every 500 ms
// ({type: "audio-stats"}), and answers the kernel's clock pings ({type: "audio-ping"}).
//
// Latency of a stamped chunk: the worklet says at which AudioContext time the stamped sample
// was rendered; AudioContext.getOutputTimestamp() maps context time to performance time at the
// output (it includes the output latency); performance.timeOrigin + that is the page's wall
// clock, which the kernel compares with the stamp's time.time() after correcting for the
// offset between the two clocks that its pings measured.

const WORKLET_SOURCE = "__PEERIX_AUDIO_WORKLET_SOURCE__";
const PROCESSOR = "__PEERIX_AUDIO_PROCESSOR__";
// one message of audio (the kernel's default batch) + 20 ms: the target without `buffer_ms`
const DEFAULT_TARGET_MS = Number("__PEERIX_AUDIO_DEFAULT_TARGET_MS__");
const REPORT_MS = 500;
const METER_FLOOR_DB = -60;
const SPEAKING_DB = -45;

const now = () => performance.timeOrigin + performance.now();

function newId() {
  try {
    return crypto.randomUUID();
  } catch {
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  }
}

// -- the page's one AudioContext ------------------------------------------------------------
function pageAudio() {
  const registry = (globalThis.__peerixAudio = globalThis.__peerixAudio || {});
  let shared = registry[PROCESSOR];
  if (shared) return shared;
  const ctx = new AudioContext({ sampleRate: 48000, latencyHint: 0 });
  const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "text/javascript" }));
  const ready = ctx.audioWorklet.addModule(url).finally(() => URL.revokeObjectURL(url));
  const listeners = new Set();
  ctx.addEventListener("statechange", () => {
    for (const fn of [...listeners]) fn(ctx.state);
  });
  shared = registry[PROCESSOR] = { ctx, ready, listeners };
  return shared;
}

// Icons as inline SVG (emoji need a font that not every machine has).
const SPEAKER = '<path d="M3 9v6h4l5 4V5L7 9H3z" fill="currentColor"/>';
const ICONS = {
  on: `<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">${SPEAKER}<path d="M15.5 8.5a5 5 0 0 1 0 7M18 6a8.5 8.5 0 0 1 0 12" stroke="currentColor" stroke-width="1.8" fill="none" stroke-linecap="round"/></svg>`,
  off: `<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">${SPEAKER}<path d="M16 9l6 6M22 9l-6 6" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/></svg>`,
};

function toDb(rms) {
  return rms > 0 ? Math.max(-100, 20 * Math.log10(rms)) : -100;
}

// -- one widget's player in this page -------------------------------------------------------
export function createAudioPlayer(model, send, { label = "sound" } = {}) {
  const shared = pageAudio();
  const ctx = shared.ctx;
  const views = new Set();
  let node = null;
  let failed = null;
  let active = false; // the kernel is sending
  let stats = null; // the worklet's last counters
  let latencies = []; // [sent_ms, out_page_ms, arrived_page_ms] not reported yet
  const arrivals = new Map(); // stamp sent_ms -> when its sample reached this page (page clock)
  const recent = []; // the last chunks: {pos, end, at} (stream positions, page clock)
  let lastLatency = null;
  let chunks = 0;
  let suspendedDrops = 0; // chunks that came while the context could not play
  let lastArrival = 0; // when the last chunk reached this page (ms, page clock)
  let maxGap = 0; // the longest wait between two chunks since the last report (ms)
  let lateChunks = 0; // chunks that came over 60 ms after the one before (a hiccup upstream)
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0.5;
  const gain = ctx.createGain();
  analyser.connect(gain);
  gain.connect(ctx.destination);

  const applyMute = () => {
    gain.gain.value = model.get("muted") ? 0 : 1;
    refresh();
  };
  // the jitter buffer's target: AudioView's `buffer_ms`, else the default
  const targetMs = Number(model.get("buffer_ms")) || DEFAULT_TARGET_MS;
  const setup = shared.ready.then(
    () => {
      node = new AudioWorkletNode(ctx, PROCESSOR, {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { targetMs, lowMs: 20, maxMs: targetMs + 190, maxTargetMs: targetMs + 140 },
      });
      node.port.onmessage = (event) => onWorklet(event.data);
      node.connect(analyser);
    },
    (error) => {
      failed = `audio worklet did not load: ${error}`;
      console.warn("peerix audio:", failed);
      refresh();
    },
  );

  function outputWallTime(contextTime) {
    // performance time at which the sample rendered at `contextTime` leaves the output
    const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
    if (ts && ts.performanceTime > 0 && ts.contextTime > 0) {
      return performance.timeOrigin + ts.performanceTime + (contextTime - ts.contextTime) * 1000;
    }
    // no output timestamp (no device yet): the render clock plus the reported latency
    const latency = (ctx.outputLatency || 0) + (ctx.baseLatency || 0);
    return now() + (contextTime - ctx.currentTime + latency) * 1000;
  }

  function onWorklet(m) {
    if (!m) return;
    if (m.type === "stats") {
      stats = m;
      refresh();
    } else if (m.type === "played") {
      const out = outputWallTime(m.time);
      const arrived = arrivals.get(m.sent);
      arrivals.delete(m.sent);
      latencies.push(arrived === undefined ? [m.sent, out] : [m.sent, out, arrived]);
      if (latencies.length > 200) latencies.shift();
      lastLatency = out - m.sent;
    }
  }

  function peakHz() {
    // the strongest bin of the page's own AnalyserNode (what is being played)
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    let best = -1;
    let bestDb = -Infinity;
    for (let i = 1; i < bins.length; i++) {
      if (bins[i] > bestDb) {
        bestDb = bins[i];
        best = i;
      }
    }
    if (best < 0 || !Number.isFinite(bestDb)) return { hz: null, db: null };
    return { hz: (best * ctx.sampleRate) / analyser.fftSize, db: bestDb };
  }

  function report() {
    const s = stats || {};
    const rate = ctx.sampleRate;
    const peak = peakHz();
    const content = {
      type: "audio-stats",
      context: ctx.state,
      active,
      muted: !!model.get("muted"),
      chunks,
      dropped_suspended: suspendedDrops,
      max_gap_ms: maxGap,
      late_chunks: lateChunks,
      state: s.state || (node ? "idle" : failed ? "failed" : "loading"),
      played_s: (s.played || 0) / rate,
      silent_s: (s.silent || 0) / rate,
      underruns: s.underruns || 0,
      dropped_ms: ((s.dropped || 0) / rate) * 1000,
      duplicated_ms: ((s.duplicated || 0) / rate) * 1000,
      buffer_ms: ((s.depth || 0) / rate) * 1000,
      target_ms: ((s.target || 0) / rate) * 1000,
      level_dbfs: toDb(s.rms || 0),
      peak_hz: peak.hz,
      peak_db: peak.db,
      output_latency_ms: (ctx.outputLatency || 0) * 1000,
      base_latency_ms: (ctx.baseLatency || 0) * 1000,
      sample_rate: rate,
      page_now: now(),
      latencies,
      error: failed,
    };
    latencies = [];
    maxGap = 0;
    send(content);
  }

  function refresh() {
    for (const view of views) view.show();
  }

  const onState = () => refresh();
  shared.listeners.add(onState);
  model.on("change:muted", applyMute);
  applyMute();
  const timer = setInterval(report, REPORT_MS);

  function handle(msg, buffers) {
    if (!msg) return false;
    if (msg.type === "audio") {
      chunks += 1;
      active = true;
      const arrived = performance.now();
      const samplesIn = buffers && buffers.length ? buffers[0].byteLength / 2 : 0;
      recent.push({ pos: msg.pos, end: msg.pos + samplesIn, at: performance.timeOrigin + arrived });
      if (recent.length > 64) recent.shift();
      for (const stamp of msg.stamps || []) {
        // a stamp is announced once the kernel read all of it, often a chunk after the one
        // holding its first sample: that chunk's arrival is when the page had the sample
        const holder = recent.find((c) => stamp[0] >= c.pos && stamp[0] < c.end);
        arrivals.set(stamp[1], holder ? holder.at : performance.timeOrigin + arrived);
        if (arrivals.size > 64) arrivals.delete(arrivals.keys().next().value);
      }
      if (lastArrival) {
        maxGap = Math.max(maxGap, arrived - lastArrival);
        if (arrived - lastArrival > 60) lateChunks += 1;
      }
      lastArrival = arrived;
      if (!node || ctx.state !== "running" || !buffers || !buffers.length) {
        suspendedDrops += 1; // nothing can play it now; a later chunk starts fresh
        if (ctx.state === "suspended") refresh();
        return true;
      }
      const view = buffers[0];
      const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      const pcm = new Int16Array(bytes.slice().buffer); // aligned copy
      const samples = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
      node.port.postMessage(
        { type: "chunk", pos: msg.pos, samples, stamps: msg.stamps || [] },
        [samples.buffer],
      );
      return true;
    }
    if (msg.type === "audio-end") {
      // the kernel stopped sending (track ended, source switched, no view): drain, no underrun
      active = false;
      lastArrival = 0;
      if (node) node.port.postMessage({ type: "end" });
      refresh();
      return true;
    }
    if (msg.type === "audio-ping") {
      send({ type: "audio-pong", t: msg.t, page: now() });
      return true;
    }
    return false;
  }

  function enable() {
    return ctx.resume().then(refresh, (error) => console.warn("peerix audio: resume", error));
  }

  function toggleMute() {
    send({ type: "mute", muted: !model.get("muted") });
  }

  // -- controls in a view: level meter, mute toggle, "click to enable sound" ---------------
  function attach(container) {
    const bar = document.createElement("div");
    bar.className = "peerix-audio";
    const mute = document.createElement("button");
    mute.className = "peerix-audio-mute";
    mute.type = "button";
    const meter = document.createElement("div");
    meter.className = "peerix-audio-meter";
    const fill = document.createElement("div");
    fill.className = "peerix-audio-meter-fill";
    meter.appendChild(fill);
    const text = document.createElement("span");
    text.className = "peerix-audio-text";
    const enableButton = document.createElement("button");
    enableButton.className = "peerix-audio-enable";
    enableButton.type = "button";
    enableButton.innerHTML = `${ICONS.on}<span>Click to enable ${label}</span>`;
    enableButton.title = "The browser blocks sound until you interact with the page";
    bar.append(mute, meter, text, enableButton);
    container.appendChild(bar);
    container.classList.add("peerix-has-audio");
    mute.addEventListener("click", (event) => {
      event.stopPropagation();
      if (ctx.state !== "running") void enable();
      toggleMute();
    });
    enableButton.addEventListener("click", (event) => {
      event.stopPropagation();
      void enable();
    });
    const view = {
      root: bar,
      show() {
        const s = stats || {};
        const muted = !!model.get("muted");
        const level = toDb(s.rms || 0);
        const blocked = ctx.state === "suspended" && (active || chunks > 0);
        const fraction = Math.max(0, Math.min(1, (level - METER_FLOOR_DB) / -METER_FLOOR_DB));
        fill.style.width = `${(fraction * 100).toFixed(1)}%`;
        fill.classList.toggle("loud", level > -12 && level <= -3);
        fill.classList.toggle("clipping", level > -3);
        const icon = muted ? "off" : "on";
        if (mute.dataset.icon !== icon) {
          mute.innerHTML = ICONS[icon];
          mute.dataset.icon = icon;
        }
        mute.title = muted ? "Unmute" : "Mute";
        mute.setAttribute("aria-pressed", String(muted));
        enableButton.hidden = !blocked;
        const played = (s.played || 0) / ctx.sampleRate;
        text.textContent = failed
          ? "no audio worklet"
          : blocked
            ? "sound blocked"
            : s.state === "playing"
              ? `${Math.round(level)} dB${lastLatency == null ? "" : ` · ${Math.round(lastLatency)} ms`}`
              : active
                ? s.state || "…"
                : "";
        bar.dataset.context = ctx.state;
        bar.dataset.state = s.state || "idle";
        bar.dataset.played = played.toFixed(3);
        bar.dataset.underruns = String(s.underruns || 0);
        bar.dataset.level = level.toFixed(1);
        bar.dataset.muted = String(muted);
        bar.dataset.blocked = String(blocked);
        bar.classList.toggle("speaking", s.state === "playing" && level > SPEAKING_DB);
        bar.classList.toggle("muted", muted);
        bar.title =
          `played ${played.toFixed(1)} s, underruns ${s.underruns || 0}, ` +
          `buffer ${Math.round(((s.depth || 0) / ctx.sampleRate) * 1000)} ms` +
          (lastLatency == null ? "" : `, capture to speaker ${Math.round(lastLatency)} ms`);
      },
    };
    // for tests and curious users: the player behind this element
    bar.peerixAudio = player;
    views.add(view);
    view.show();
    return () => {
      views.delete(view);
      bar.remove();
      container.classList.remove("peerix-has-audio");
    };
  }

  const player = {
    handle,
    attach,
    enable,
    peakHz,
    get context() {
      return ctx;
    },
    get stats() {
      return stats;
    },
    destroy() {
      clearInterval(timer);
      shared.listeners.delete(onState);
      model.off("change:muted", applyMute);
      void setup.then(() => {
        if (node) {
          node.port.postMessage({ type: "close" });
          node.disconnect();
        }
      });
      analyser.disconnect();
      gain.disconnect();
      views.clear();
    },
  };
  return player;
}

// -- AudioView ------------------------------------------------------------------------------
export default function audioViewWidget() {
  const frontend = newId(); // this page; the kernel counts views per page
  let model = null;
  let player = null;
  let count = 0;

  function send(content) {
    try {
      model.send({ ...content, frontend });
    } catch {
      // the widget was closed: nothing to tell
    }
  }

  return {
    initialize(ctx) {
      model = ctx.model;
      player = createAudioPlayer(model, send);
      const onMessage = (msg, buffers) => player.handle(msg, buffers);
      model.on("msg:custom", onMessage);
      return () => {
        model.off("msg:custom", onMessage);
        player.destroy();
      };
    },
    render(ctx) {
      const root = document.createElement("div");
      root.className = "peerix-audio-view";
      const title = document.createElement("div");
      title.className = "peerix-audio-title";
      const status = document.createElement("div");
      status.className = "peerix-audio-status";
      root.append(title, status);
      ctx.el.appendChild(root);
      const detach = player.attach(root);
      const update = () => {
        const state = ctx.model.get("status");
        const message = ctx.model.get("message");
        root.dataset.status = state;
        title.textContent = ctx.model.get("title");
        title.hidden = !ctx.model.get("title");
        status.textContent = state === "live" ? "" : message ? `${state}: ${message}` : state;
        status.hidden = state === "live";
      };
      ctx.model.on("change:status", update);
      ctx.model.on("change:message", update);
      ctx.model.on("change:title", update);
      update();
      count += 1;
      send({ type: "rendered", views: count });
      return () => {
        ctx.model.off("change:status", update);
        ctx.model.off("change:message", update);
        ctx.model.off("change:title", update);
        detach();
        count -= 1;
        send({ type: "views", views: count });
      };
    },
  };
}
