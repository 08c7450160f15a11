// The test page's side of tests/interop: a plain web page running the browser Peerix peer
// (peerix_nb/browser/peer.js) on Chromium's own RTCPeerConnection, signalling over NATS
// WebSocket, with getUserMedia's fake camera and microphone. Nothing here touches SDP: the
// page sends exactly what Chromium produces. The test drives it with page.evaluate through
// `window.harness` and reads what a person would see (<video> size and clock, audio packets).

import { Peer } from "/peerix/peer.js";
import { NatsDriver } from "/peerix/drivers.js";
import { NatsConnection } from "/peerix/nats.js";
import { OFFER, SignalingCodec } from "/peerix/codec.js";

const events = [];
const messages = {}; // label -> [text]
const local = {}; // label -> MediaStream we publish
let peer = null;

function summary(event) {
  return {
    name: event.name,
    remote: event.remote ? event.remote.id : null,
    label: event.label ?? null,
    kind: event.kind ?? null,
    state: event.state ?? null,
    detail: event.detail ?? (event.error ? `${event.error.code}: ${event.error.message}` : null),
    t: performance.now(),
  };
}

function videoFor(remoteId, label) {
  return document.querySelector(`video[data-remote="${remoteId}"][data-label="${label}"]`);
}

function show(remoteId, label, stream) {
  let video = videoFor(remoteId, label);
  if (!video) {
    video = document.createElement("video");
    video.dataset.remote = remoteId;
    video.dataset.label = label;
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    document.body.appendChild(video);
  }
  video.srcObject = stream;
  video.play().catch(() => {});
}

window.harness = {
  async create({ id, wsUrl, prefix, connectionTimeout = 15, dropOffers = 0 }) {
    const driver = new NatsDriver(new NatsConnection(wsUrl), prefix);
    if (dropOffers > 0) {
      // A lossy network between this page and the server: the first OFFERs never arrive.
      // What the page sends is untouched; only the wire loses it.
      const codec = new SignalingCodec({ compression: true });
      const dispatch = driver.dispatch.bind(driver);
      let left = dropOffers;
      driver.dispatch = async (namespace, message) => {
        const decoded = await codec.decode(message).catch(() => null);
        if (decoded && decoded.type === OFFER && left > 0) {
          left -= 1;
          events.push({ name: "test:dropped", kind: "offer", t: performance.now() });
          return;
        }
        return dispatch(namespace, message);
      };
    }
    await driver.connect();
    peer = new Peer({ id, driver, connectionTimeout });
    peer.on("*", (event) => events.push(summary(event)));
    peer.on("channel:message", (event) => {
      (messages[event.label] ||= []).push(typeof event.data === "string" ? event.data : "<binary>");
    });
    peer.on("stream:add", (event) => show(event.remote.id, event.label, event.stream));
    peer.on("stream:remove", (event) => {
      const video = videoFor(event.remote.id, event.label);
      if (video) video.remove();
    });
    return peer.id;
  },

  join: (room) => peer.join(room, { name: peer.id }),
  leave: () => peer.leave(),
  open: (label) => peer.open(label),
  send: (text, label) => peer.send(text, label),
  messages: (label) => messages[label] || [],
  events: () => events,

  async publish(label, { video = true, audio = false } = {}) {
    const stream = await navigator.mediaDevices.getUserMedia({ video, audio });
    local[label] = stream;
    await peer.publish(stream, label);
  },

  async unpublish(label) {
    await peer.unpublish(label);
    for (const track of local[label].getTracks()) track.stop();
    delete local[label];
  },

  state(remoteId) {
    const remote = peer.connections.get(remoteId);
    return remote ? remote.state : null;
  },

  /** What a person sees of `label` from `remoteId`: picture size and the video's clock. */
  video(remoteId, label) {
    const video = videoFor(remoteId, label);
    if (!video) return null;
    return { width: video.videoWidth, height: video.videoHeight, time: video.currentTime };
  },

  /** Audio of `label` from `remoteId`: its track, and packets the receiver got for it. */
  async audio(remoteId, label) {
    const remote = peer.connections.get(remoteId);
    const stream = remote && remote.streams.get(label);
    if (!stream) return null;
    const tracks = stream.getAudioTracks();
    let packets = 0;
    for (const track of tracks) {
      const stats = await remote.pc.getStats(track);
      stats.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") packets += s.packetsReceived || 0;
      });
    }
    return { tracks: tracks.length, packets };
  },

  streams(remoteId) {
    const remote = peer.connections.get(remoteId);
    return remote ? [...remote.streams.keys()] : [];
  },
};
window.harnessReady = true;
