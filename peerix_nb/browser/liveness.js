// @ts-check
// Fast `disconnected` in the page (liveness.py's counterpart): pings on the control channel,
// a watch on what it drains, and a Remote's `disconnected` and `connected` from them.

/** Seconds between control-channel pings, and without drain progress before `disconnected`
 *  (liveness.py's PING_INTERVAL and STALL_AFTER; see Remote._startLiveness). */
export const PING_INTERVAL = 1;
export const STALL_AFTER = 2.5;
const PING = '["ping"]';

/** @typedef {import("./remote.js").Remote} Remote */

/**
 * Fast `disconnected` in the page: the browser counterpart of liveness.py.
 *
 * Why: the Python peer sends `["ping"]` on the control channel every PING_INTERVAL and watches
 * SCTP acknowledgements progress in aiortc's private state (aiortc has no `disconnected` of its
 * own). A page cannot see SCTP acknowledgements. The nearest thing it can see is the control
 * channel's `bufferedAmount`: bytes handed to send() that the browser's SCTP stack has not sent
 * yet. SCTP sends new data only while its congestion and receive windows have room, and only
 * acknowledgements make room, so data that stays buffered with no progress for STALL_AFTER means
 * the remote (or the path) stopped acknowledging: `disconnected`; draining again: `connected`.
 * It is a weaker signal than the Python one, because unacknowledged data that the stack has
 * already sent is not "buffered": measured in Chromium 156 against a frozen remote browser
 * (SIGSTOP), the 8-byte pings fitted in the stalled window and bufferedAmount stayed 0 for 20 s,
 * while the browser's own ICE said `disconnected` after ~5.3 s; pings padded to 1.2 kB made it
 * grow ~2 s after the freeze (a stall seen at ~4.5 s). So the ICE `disconnected`
 * (Remote._onConnectionState) stays the main signal in a page, this watch catches what is stuck
 * behind larger control messages (offers, candidates, channel requests), and the pings stay the
 * Python peer's 8 bytes (browser Peerix ignores them), not 1.2 kB a second per remote for ~1 s.
 */
export class DrainWatch {
  /** @param {number} [stallAfterMs] */
  constructor(stallAfterMs = STALL_AFTER * 1000) {
    this.stallAfter = stallAfterMs;
    this._lastBuffered = 0;
    /** @type {number | null} */
    this._stalledSince = null;
  }

  /**
   * `buffered`: the channel's bufferedAmount now; `queued`: bytes handed to send() since the
   * previous call. False once data has waited `stallAfter` ms without any of it draining.
   * @param {number} now ms
   * @param {number} buffered
   * @param {number} [queued]
   * @returns {boolean}
   */
  alive(now, buffered, queued = 0) {
    const drained = this._lastBuffered + queued - buffered > 0;
    if (!buffered) this._stalledSince = null;
    else if (drained || this._stalledSince === null) this._stalledSince = now;
    this._lastBuffered = buffered;
    return this._stalledSince === null || now - this._stalledSince < this.stallAfter;
  }
}

/**
 * The pings and drain watch of one open control channel, ticked by a timer (4 ticks per
 * PING_INTERVAL) until stop(). The Remote owning it reads each tick's verdict (`check`).
 */
export class PingWatch {
  /**
   * @param {RTCDataChannel} control the control channel (open)
   * @param {() => void} onTick called by the timer
   */
  constructor(control, onTick) {
    this.control = control;
    this.watch = new DrainWatch();
    this.lastPing = -Infinity;
    /** Bytes handed to control.send() since the last tick (what bufferedAmount counts). */
    this.queued = 0;
    // heard: when the remote's last ping came. A remote that pings (a peerix_nb peer, not
    // browser Peerix) and stops for STALL_AFTER is gone: the page's strongest signal, since
    // neither SCTP acks nor (for small pings) bufferedAmount show a silent remote.
    /** @type {number | null} */
    this.heard = null;
    this.timer = setInterval(onTick, (PING_INTERVAL * 1000) / 4);
  }

  stop() {
    clearInterval(this.timer);
  }

  /**
   * Ping if one is due, then judge: null while the remote is alive, else why it is not.
   * @param {number} now ms (performance.now())
   * @returns {string | null}
   */
  check(now) {
    const control = this.control;
    if (now - this.lastPing >= PING_INTERVAL * 1000) {
      try {
        control.send(PING);
        this.queued += PING.length;
      } catch {
        // the channel is closing: its onclose ends the remote
      }
      this.lastPing = now;
    }
    const queued = this.queued;
    this.queued = 0;
    const silent = this.heard !== null && now - this.heard >= STALL_AFTER * 1000;
    const alive = this.watch.alive(now, control.bufferedAmount, queued) && !silent;
    if (alive) return null;
    return silent ? "no ping from the remote" : "control channel not draining";
  }
}

/**
 * One look at `remote`'s control channel (Remote._livenessTick, 4 per PING_INTERVAL): a stall
 * while connected is `disconnected`; draining again, with ICE connected, `connected`.
 * @param {Remote} remote
 * @param {number} now ms
 */
export function livenessTick(remote, now) {
  const live = remote._liveness;
  if (!live) return;
  const control = live.control;
  if (remote._closing || control !== remote._control || control.readyState !== "open") {
    remote._stopLiveness();
    return;
  }
  const stall = live.check(now); // null while alive
  if (stall && remote.state === "connected") {
    remote._stalled = true;
    remote._setState("disconnected", stall);
    remote._armTimeout();
  } else if (!stall && remote._stalled) {
    remote._stalled = false;
    // Back to connected only if ICE agrees (its own `disconnected` waits for ICE).
    if (remote.state === "disconnected" && remote.pc.connectionState === "connected") {
      remote._cancelTimeout();
      remote._setState("connected", "control channel draining again");
    }
  }
}
