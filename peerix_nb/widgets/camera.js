// CameraFrames and AudioChunks front end (anywidget ESM, no build step): the pictures and the
// sound of an ipywebrtc media stream (a CameraStream: the browser's camera and microphone),
// sent to the kernel over the widget comm. Custom messages only: ipywidgets' state sync from
// the page is throttled until the kernel reports "idle", which it does not do for messages
// handled while a cell awaits.
//
// Pictures (CameraFrames): pull, one frame per request. The kernel sends {type: "grab", seq};
// the page draws the stream's current frame on a canvas, encodes it and answers {type:
// "frame", seq, width, height} with the image as a binary buffer, or {type: "error", seq,
// message}.
//
// Sound (AudioChunks): push. The kernel sends {type: "listen", rate, window} (again until a
// chunk comes); the page captures the stream's audio with an AudioWorklet in a 48 kHz
// AudioContext, downmixed to mono, in 20 ms chunks of 960 little-endian s16 samples, and
// sends them as {type: "audio", seq, pts, rate, channels, dropped, frontend} with one or more
// chunks' samples as the buffer (pts: the first sample's number since capture began).
// Bounded: at most `window` chunks sent and unacknowledged (the kernel answers {type: "ack",
// seq} every few), at most PENDING more waiting; past that the oldest waiting chunk is
// dropped and counted (`dropped`). {type: "stop"} ends the capture (the microphone belongs to
// ipywebrtc and stays on).
//
// Everything happens in `initialize` (at model creation), so the widgets need no view.

const PREFIX = "IPY_MODEL_";
const AUDIO_RATE = 48000;
const AUDIO_SAMPLES = 960; // 20 ms at 48 kHz
const PENDING = 25; // chunks waiting for room in the window (500 ms), then the oldest is dropped
const BATCH = 10; // chunks in one message at most (200 ms), when they waited
const ACK_TIMEOUT = 3000; // ms without an ack with a full window: count it lost, go on

// The capture processor: runs in the audio rendering thread, frames 128-sample render quanta
// into 20 ms s16 chunks and posts them (transferred, not copied) with their first sample's pts.
const WORKLET = `
class PeerixCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = new Int16Array(${AUDIO_SAMPLES});
    this.fill = 0;
    this.pts = 0;
    this.running = true;
    this.port.onmessage = (event) => { if (event.data === "stop") this.running = false; };
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = channel[i] * 32768;
        this.chunk[this.fill++] = s >= 32767 ? 32767 : s <= -32768 ? -32768 : Math.round(s);
        if (this.fill === ${AUDIO_SAMPLES}) {
          this.port.postMessage({ pts: this.pts, buffer: this.chunk.buffer }, [this.chunk.buffer]);
          this.chunk = new Int16Array(${AUDIO_SAMPLES});
          this.fill = 0;
          this.pts += ${AUDIO_SAMPLES};
        }
      }
    }
    return this.running;
  }
}
registerProcessor("peerix-capture", PeerixCapture);
`;

let workletUrl = null; // one blob: URL per page for every AudioChunks (nothing is fetched)

function newId() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function describe(error) {
  return error && error.name ? `${error.name}: ${error.message}` : String(error);
}

async function mediaStream(model) {
  // The `camera` trait is a widget reference; ipywebrtc's MediaStream models have
  // captureStream() (a CameraStream calls getUserMedia once and keeps the promise).
  const ref = model.get("camera");
  const id = typeof ref === "string" && ref.startsWith(PREFIX) ? ref.slice(PREFIX.length) : ref;
  const source = await model.widget_manager.get_model(id);
  if (!source || typeof source.captureStream !== "function") {
    throw new Error("the camera widget is not an ipywebrtc media stream");
  }
  return await source.captureStream();
}

function playing(video) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= 2 && video.videoWidth > 0) {
      resolve();
      return;
    }
    video.addEventListener("loadeddata", () => resolve(), { once: true });
    video.addEventListener("error", () => reject(new Error("the camera video failed")), {
      once: true,
    });
  });
}

// The pictures: one encoded frame per "grab".
function frameGrabber(model, isClosed) {
  let video = null;
  let ready = null; // promise: the video element plays the stream
  const canvas = document.createElement("canvas");

  function start() {
    if (ready === null) {
      ready = (async () => {
        video = document.createElement("video");
        video.muted = true;
        video.playsInline = true;
        video.srcObject = await mediaStream(model);
        await video.play();
        await playing(video);
      })();
      ready.catch(() => {
        ready = null; // try again on the next request
      });
    }
    return ready;
  }

  async function grab(msg) {
    const seq = msg.seq;
    try {
      await start();
      if (isClosed()) return;
      const width = video.videoWidth;
      const height = video.videoHeight;
      if (canvas.width !== width || canvas.height !== height) {
        canvas.width = width;
        canvas.height = height;
      }
      canvas.getContext("2d").drawImage(video, 0, 0, width, height);
      const type = `image/${msg.format || "jpeg"}`;
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, type, msg.quality));
      if (!blob) throw new Error(`the browser cannot encode ${type}`);
      const buffer = await blob.arrayBuffer();
      if (!isClosed()) model.send({ type: "frame", seq, width, height }, undefined, [buffer]);
    } catch (error) {
      if (!isClosed()) model.send({ type: "error", seq, message: describe(error) });
    }
  }

  return {
    grab,
    close() {
      if (video !== null) video.srcObject = null; // the camera's tracks belong to ipywebrtc
    },
  };
}

// The sound: 20 ms PCM chunks pushed from an AudioWorklet, in a bounded window of acks. A
// kernel that keeps up gets each chunk alone as soon as it is made; one that lags gets what
// waited in one message (up to BATCH chunks): fewer messages when messages are what costs.
function audioPusher(model, frontend) {
  let capture = null; // promise of {context, source, node} once "listen" came
  let stopped = false;
  let windowSize = 50; // chunks sent and not acknowledged, at most (the kernel may say)
  let seq = 0; // messages sent
  const inFlight = []; // [{seq, chunks}] not acknowledged yet
  let inFlightChunks = 0;
  let lastAck = 0;
  let dropped = 0;
  const waiting = []; // chunks not sent yet, at most PENDING: {pts, buffer}

  function send(batch) {
    seq += 1;
    let data = batch[0].buffer;
    if (batch.length > 1) {
      const joined = new Int16Array(batch.length * AUDIO_SAMPLES);
      batch.forEach((chunk, i) => joined.set(new Int16Array(chunk.buffer), i * AUDIO_SAMPLES));
      data = joined.buffer;
    }
    inFlight.push({ seq, chunks: batch.length });
    inFlightChunks += batch.length;
    const header = { type: "audio", seq, pts: batch[0].pts, rate: AUDIO_RATE, channels: 1, dropped, frontend };
    try {
      model.send(header, undefined, [data]);
    } catch {
      // the widget is closing
    }
  }

  function flush() {
    const now = performance.now();
    if (inFlightChunks >= windowSize && now - lastAck > ACK_TIMEOUT) {
      inFlight.length = 0; // no ack for a while with a full window: the kernel lost track; go on
      inFlightChunks = 0;
      lastAck = now;
    }
    while (waiting.length && inFlightChunks < windowSize) {
      let count = 1; // contiguous chunks only: a message's samples follow each other
      const room = Math.min(BATCH, windowSize - inFlightChunks, waiting.length);
      while (count < room && waiting[count].pts === waiting[count - 1].pts + AUDIO_SAMPLES) count++;
      send(waiting.splice(0, count));
    }
  }

  function offer(chunk) {
    if (stopped) return;
    waiting.push(chunk);
    if (waiting.length > PENDING) {
      waiting.shift();
      dropped += 1;
    }
    flush();
  }

  function ack(msg) {
    if (typeof msg.seq !== "number") return;
    while (inFlight.length && inFlight[0].seq <= msg.seq) inFlightChunks -= inFlight.shift().chunks;
    lastAck = performance.now();
    flush();
  }

  async function open() {
    const stream = await mediaStream(model);
    if (!stream.getAudioTracks().length) {
      throw new Error("the stream has no audio track (ask for it: constraints {audio: true})");
    }
    const context = new AudioContext({ sampleRate: AUDIO_RATE });
    try {
      if (!workletUrl) {
        workletUrl = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
      }
      await context.audioWorklet.addModule(workletUrl);
      const source = context.createMediaStreamSource(stream);
      // One input channel: the browser downmixes a stereo microphone to mono for us.
      const node = new AudioWorkletNode(context, "peerix-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
        channelInterpretation: "speakers",
      });
      node.port.onmessage = (event) => offer(event.data);
      source.connect(node);
      if (context.state !== "running") {
        // A page that blocks sound until a click may block capture too: resume on the first one.
        context.resume().catch(() => {});
        const resume = () => context.resume().catch(() => {});
        document.addEventListener("pointerdown", resume, { once: true, capture: true });
      }
      return { context, source, node };
    } catch (error) {
      context.close().catch(() => {});
      throw error;
    }
  }

  function listen(msg) {
    if (stopped || capture !== null) return;
    if (typeof msg.window === "number" && msg.window >= 1) windowSize = msg.window;
    lastAck = performance.now();
    capture = open();
    capture.then(
      (parts) => {
        if (stopped) release(parts);
      },
      (error) => {
        if (!stopped) model.send({ type: "error", message: describe(error), frontend });
      },
    );
  }

  function release({ context, source, node }) {
    node.port.postMessage("stop");
    node.port.onmessage = null;
    source.disconnect();
    context.close().catch(() => {});
  }

  function stop() {
    if (stopped) return;
    stopped = true;
    waiting.length = 0;
    if (capture !== null) capture.then(release, () => {});
  }

  return { listen, ack, stop };
}

export default {
  initialize({ model }) {
    const frontend = newId(); // this page, for the kernel to hear one page only
    let closed = false;
    const frames = frameGrabber(model, () => closed);
    const audio = audioPusher(model, frontend);

    function onMessage(msg) {
      if (!msg || (msg.to && msg.to !== frontend)) return;
      if (msg.type === "grab") void frames.grab(msg);
      else if (msg.type === "listen") audio.listen(msg);
      else if (msg.type === "ack") audio.ack(msg);
      else if (msg.type === "stop") audio.stop();
    }

    model.on("msg:custom", onMessage);
    return () => {
      closed = true;
      model.off("msg:custom", onMessage);
      frames.close();
      audio.stop();
    };
  },
};
