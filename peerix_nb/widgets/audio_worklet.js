// AudioWorklet processor of peerix_nb's audio playback (AudioView, VideoView with sound).
//
// Loaded by audio.js from a Blob URL of this text (no network); registered under a name the
// kernel substitutes below (versioned by this text, so a reloaded widget module never
// collides with an older registration in the same page).
//
// A small jitter buffer between the kernel's 20 ms chunks and the audio device's 128-sample
// render quanta. Mono 48 kHz float samples arrive over `port` with their position in the
// kernel's sample stream. What it guarantees:
// - bounded latency: it starts playing once `target` ms are buffered; more than the target
//   plus `maxMs - targetMs` buffered (the page was late and a burst arrived) drops the oldest
//   samples down to the target;
// - when the kernel is late the buffer runs dry: silence, one underrun counted, and it buffers
//   `target` ms again before playing (the target grows by 20 ms per underrun, up to
//   `maxTarget`: a loaded machine gets a deeper buffer);
// - it shrinks back by the slack it did not need: every 10 s without an underrun, by the
//   smallest depth seen while playing in those 10 s less a 10 ms margin, down to the base
//   target (so the target follows the worst wait of the last 10 s, not a fixed decay);
// - clock drift (the kernel's clock against the audio device's) is absorbed: the smallest depth
//   seen over each second should stay within [low, target]; above it 1 to 4 samples per
//   quantum are dropped (the more, the further above: 0.8-3 %), below it one is repeated,
//   for the next second;
// - it reports when each stamped sample reached the output (context time), so the page can
//   tell the capture-to-speaker latency, and its counters ten times a second.

const RENDER_QUANTUM = 128;
const SLACK_WINDOW_S = 10; // how long the buffer must have had slack before it shrinks

class PeerixAudioPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    const ms = (v) => Math.round((v * sampleRate) / 1000);
    this.baseTarget = ms(o.targetMs || 60);
    this.target = this.baseTarget;
    this.maxTarget = ms(o.maxTargetMs || 200);
    this.low = ms(o.lowMs || 20);
    this.extra = ms(o.maxMs || 250) - this.baseTarget; // allowed above the target
    this.chunks = []; // {pos, data: Float32Array, off}
    this.depth = 0; // samples buffered
    this.readPos = -1; // stream position of the next sample to play (-1: none yet)
    this.state = "idle"; // idle (nothing to play), buffering, playing
    this.ending = false; // the kernel said the stream stopped: running dry is no underrun
    this.stamps = []; // [{pos, sent}] not played yet
    this.history = []; // recent quanta: {pos, end, time}
    this.played = 0; // samples played from the buffer
    this.silent = 0; // samples of silence while playing or buffering (underruns)
    this.underruns = 0;
    this.dropped = 0; // samples dropped: too much buffered, or drift
    this.duplicated = 0; // samples repeated: drift
    this.minDepth = Infinity; // over the current second
    this.windowLeft = sampleRate;
    this.adjust = 0; // n > 0: drop n samples per quantum, -1: repeat one, 0: nothing
    this.worstDip = Infinity; // the smallest depth while playing in this slack window
    this.slackLeft = SLACK_WINDOW_S * sampleRate;
    this.slackUnderruns = 0; // underruns in this slack window
    this.margin = ms(o.marginMs || 10);
    this.sumSquares = 0; // of what was put out since the last report (silence counts as 0)
    this.levelCount = 0;
    this.levels = []; // [sumSquares, count] of the last 3 reports: the level is over 300 ms
    this.peak = 0;
    this.reportLeft = 0;
    this.closed = false;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(m) {
    if (!m) return;
    if (m.type === "chunk") {
      const data = m.samples;
      if (!data || !data.length) return;
      if (this.readPos < 0 || this.state === "idle") {
        // first audio (or after an end): play from this chunk on
        this.chunks = [];
        this.depth = 0;
        this.readPos = m.pos;
        this.state = "buffering";
      }
      this.ending = false;
      this.chunks.push({ pos: m.pos, data, off: 0 });
      this.depth += data.length;
      if (this.depth > this.target + this.extra) this.dropOldest(this.depth - this.target);
      for (const s of m.stamps || []) this.addStamp(s[0], s[1]);
    } else if (m.type === "end") {
      this.ending = true;
    } else if (m.type === "close") {
      this.closed = true; // the node is gone: let the processor go too
    } else if (m.type === "reset") {
      this.chunks = [];
      this.depth = 0;
      this.readPos = -1;
      this.stamps = [];
      this.history = [];
      this.state = "idle";
    }
  }

  dropOldest(count) {
    this.dropped += count;
    this.depth -= count;
    while (count > 0 && this.chunks.length) {
      const c = this.chunks[0];
      const left = c.data.length - c.off;
      const n = Math.min(left, count);
      c.off += n;
      count -= n;
      if (c.off >= c.data.length) this.chunks.shift();
    }
    const head = this.chunks[0];
    if (head) this.readPos = head.pos + head.off;
  }

  addStamp(pos, sent) {
    if (pos >= this.readPos) {
      this.stamps.push({ pos, sent });
      return;
    }
    // already played (its burst was found a frame after it was sent): look it up
    for (const h of this.history) {
      if (pos >= h.pos && pos < h.end) {
        this.port.postMessage({ type: "played", sent, time: h.time + (pos - h.pos) / sampleRate });
        return;
      }
    }
  }

  next() {
    // the next buffered sample (caller checks depth > 0)
    const c = this.chunks[0];
    const v = c.data[c.off];
    c.off += 1;
    this.depth -= 1;
    this.readPos = c.pos + c.off;
    if (c.off >= c.data.length) {
      this.chunks.shift();
      const n = this.chunks[0];
      if (n) this.readPos = n.pos + n.off;
    }
    return v;
  }

  process(inputs, outputs) {
    if (this.closed) return false;
    const out = outputs[0][0];
    if (!out) return true;
    const start = this.readPos;
    const time = currentTime;
    let i = 0;
    if (this.state === "buffering" && this.depth >= this.target) this.state = "playing";
    if (this.state === "playing") {
      // drift: samples dropped (spread out) or one repeated in this quantum, decided once
      // per second
      let adjust = this.adjust;
      const every = adjust > 0 ? Math.floor(out.length / adjust) : 0;
      for (; i < out.length; i++) {
        if (this.depth === 0) break;
        if (adjust > 0 && i % every === 0 && this.depth > 1) {
          this.next();
          this.dropped += 1;
        }
        const v = this.next();
        out[i] = v;
        this.sumSquares += v * v;
        const a = v < 0 ? -v : v;
        if (a > this.peak) this.peak = a;
        if (adjust < 0) {
          if (i + 1 < out.length) {
            i += 1;
            out[i] = v;
            this.sumSquares += v * v;
          }
          this.duplicated += 1;
          adjust = 0;
        }
      }
      this.played += i;
      if (i < out.length) {
        if (this.ending) {
          this.state = "idle";
        } else {
          // the kernel is late: silence, and buffer up again (a little deeper)
          this.underruns += 1;
          this.silent += out.length - i;
          this.state = "buffering";
          this.target = Math.min(this.maxTarget, this.target + Math.round(0.02 * sampleRate));
          this.slackUnderruns += 1;
        }
      }
      this.minDepth = Math.min(this.minDepth, this.depth);
      if (this.state === "playing") this.worstDip = Math.min(this.worstDip, this.depth);
    } else if (this.state === "buffering" && !this.ending && this.played > 0) {
      this.silent += out.length;
    }
    for (let j = i; j < out.length; j++) out[j] = 0;
    if (this.state !== "idle" || i > 0) this.levelCount += out.length;
    if (i > 0) {
      const end = this.readPos;
      this.history.push({ pos: start, end, time });
      if (this.history.length > 64) this.history.shift();
      while (this.stamps.length && this.stamps[0].pos < end) {
        const s = this.stamps.shift();
        if (s.pos >= start) {
          this.port.postMessage({ type: "played", sent: s.sent, time: time + (s.pos - start) / sampleRate });
        }
      }
    }
    this.windowLeft -= out.length;
    if (this.windowLeft <= 0) {
      this.windowLeft = sampleRate;
      if (this.state === "playing" && this.minDepth !== Infinity) {
        const excess = this.minDepth - this.target;
        // too much buffered all second long: catch up, faster the more (up to 4 in 128, 3 %)
        if (excess > 0) this.adjust = Math.min(4, 1 + Math.floor(excess / (0.02 * sampleRate)));
        else if (this.minDepth < this.low) this.adjust = -1;
        else this.adjust = 0;
      } else {
        this.adjust = 0;
      }
      this.minDepth = Infinity;
    }
    this.slackLeft -= out.length;
    if (this.slackLeft <= 0) {
      this.slackLeft = SLACK_WINDOW_S * sampleRate;
      const slack = this.worstDip - this.margin;
      if (this.slackUnderruns === 0 && this.worstDip !== Infinity && slack > 0) {
        this.target = Math.max(this.baseTarget, this.target - slack);
      }
      this.worstDip = Infinity;
      this.slackUnderruns = 0;
    }
    this.reportLeft -= out.length;
    if (this.reportLeft <= 0) {
      this.reportLeft = Math.round(sampleRate / 10);
      this.levels.push([this.sumSquares, this.levelCount]);
      if (this.levels.length > 3) this.levels.shift();
      let squares = 0;
      let count = 0;
      for (const [sq, n] of this.levels) {
        squares += sq;
        count += n;
      }
      const rms = count ? Math.sqrt(squares / count) : 0;
      this.port.postMessage({
        type: "stats",
        state: this.state,
        played: this.played,
        silent: this.silent,
        underruns: this.underruns,
        dropped: this.dropped,
        duplicated: this.duplicated,
        depth: this.depth,
        target: this.target,
        rms,
        peak: this.peak,
        time: currentTime,
      });
      this.sumSquares = 0;
      this.levelCount = 0;
      this.peak = 0;
    }
    return true;
  }
}

registerProcessor(__PEERIX_PROCESSOR__, PeerixAudioPlayer);
