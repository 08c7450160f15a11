// @ts-check
// A minimal NATS client over WebSocket (the server's `websocket { ... }` listener), enough for
// Peerix signaling: INFO, CONNECT, PING/PONG, SUB, UNSUB, PUB, MSG, +OK, -ERR. Payloads are
// raw bytes. The wire protocol is text control lines ending in CRLF; a MSG line is followed
// by exactly <#bytes> of payload and a CRLF. WebSocket frames may split or merge lines
// arbitrarily, so everything goes through one byte buffer.

/** @typedef {"connected" | "disconnected" | "error"} NatsStatus */
/** @typedef {(status: NatsStatus, detail?: string) => void} NatsStatusHandler */
/** @typedef {(payload: Uint8Array, subject: string) => void} NatsCallback */

const CRLF = new Uint8Array([13, 10]);
const utf8 = new TextEncoder();
const text = new TextDecoder();

/** @param {Uint8Array} a @param {Uint8Array} b @returns {Uint8Array} */
function concat(a, b) {
  if (!a.length) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** @param {Uint8Array} bytes @param {number} from @returns {number} */
function indexOfCrlf(bytes, from) {
  for (let i = from; i + 1 < bytes.length; i++) if (bytes[i] === 13 && bytes[i + 1] === 10) return i;
  return -1;
}

/**
 * One NATS connection that reconnects by itself. Subscriptions survive reconnects (they are
 * sent again). `onStatus(status, detail)` gets "connected", "disconnected", "error".
 */
export class NatsConnection {
  /**
   * @param {string} url the server's WebSocket listener, ws:// or wss://
   * @param {object} [options]
   * @param {string | null} [options.user]
   * @param {string | null} [options.pass]
   * @param {string | null} [options.token]
   * @param {string} [options.name] the client name the server shows
   * @param {number} [options.reconnectWaitMs]
   * @param {number} [options.connectTimeoutMs]
   * @param {NatsStatusHandler} [options.onStatus]
   */
  constructor(url, { user = null, pass = null, token = null, name = "peerix-browser",
    reconnectWaitMs = 1000, connectTimeoutMs = 5000, onStatus = () => {} } = {}) {
    this.url = url;
    this.options = { user, pass, token, name };
    this.reconnectWaitMs = reconnectWaitMs;
    this.connectTimeoutMs = connectTimeoutMs;
    this.onStatus = onStatus;
    /** @type {any} the server's INFO */
    this.info = null;
    this.connected = false;
    /** @type {WebSocket | null} */
    this._ws = null;
    /** @type {Uint8Array} what arrived and is not handled yet */
    this._buffer = new Uint8Array(0);
    /** @type {Map<number, { subject: string, callback: NatsCallback }>} sid -> {subject, callback} */
    this._subs = new Map();
    this._nextSid = 1;
    /** @type {{ resolve: () => void, reject: (error: Error) => void }[]} waiting for PONG, in order */
    this._pongs = [];
    this._closed = false;
    /** @type {Promise<void> | null} */
    this._firstConnect = null;
    this._retry = null;
  }

  /** Connect; resolves after the server answered our first PING (the CONNECT was accepted). @returns {Promise<void>} */
  connect() {
    if (!this._firstConnect) {
      this._firstConnect = new Promise((resolve, reject) => {
        this._open(resolve, reject);
      });
    }
    return this._firstConnect;
  }

  /** @param {(() => void) | null} [resolve] @param {((error: Error) => void) | null} [reject] */
  _open(resolve = null, reject = null) {
    let settled = false;
    /** @param {boolean} ok @param {string} [detail] */
    const settle = (ok, detail) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok && resolve) resolve();
      if (!ok && reject) reject(new Error(detail));
    };
    const timer = setTimeout(() => {
      settle(false, `no answer from NATS at ${this.url} within ${this.connectTimeoutMs} ms`);
      try { ws.close(); } catch { /* already closed */ }
    }, this.connectTimeoutMs);
    /** @type {WebSocket} */
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      settle(false, `cannot open ${this.url}: ${error.message}`);
      this._scheduleReconnect();
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._buffer = new Uint8Array(0);
    ws.onmessage = (event) => {
      const chunk = typeof event.data === "string" ? utf8.encode(event.data) : new Uint8Array(event.data);
      this._buffer = concat(this._buffer, chunk);
      try {
        this._parse(() => {
          // INFO arrived: introduce ourselves, re-subscribe, and PING to learn it worked.
          /** @type {Record<string, any>} */
          const connect = { verbose: false, pedantic: false, lang: "javascript", version: "peerix-0.1",
            protocol: 1, headers: false, no_responders: false, name: this.options.name };
          if (this.options.user !== null) connect.user = this.options.user;
          if (this.options.pass !== null) connect.pass = this.options.pass;
          if (this.options.token !== null) connect.auth_token = this.options.token;
          let out = `CONNECT ${JSON.stringify(connect)}\r\n`;
          for (const [sid, sub] of this._subs) out += `SUB ${sub.subject} ${sid}\r\n`;
          this._sendRaw(utf8.encode(out));
          this.flush().then(() => {
            this.connected = true;
            settle(true);
            this.onStatus("connected");
          }, () => {});
        });
      } catch (error) {
        this.onStatus("error", `NATS protocol error: ${error.message}`);
        ws.close();
      }
    };
    ws.onclose = () => {
      const was = this.connected;
      this.connected = false;
      if (this._ws === ws) this._ws = null;
      for (const pong of this._pongs.splice(0)) pong.reject(new Error("NATS connection closed"));
      settle(false, `NATS at ${this.url} closed the connection`);
      if (was) this.onStatus("disconnected");
      this._scheduleReconnect();
    };
    ws.onerror = () => {
      // The close event follows with the details we can know (browsers hide the reason).
    };
  }

  _scheduleReconnect() {
    if (this._closed || this._retry) return;
    this._retry = setTimeout(() => {
      this._retry = null;
      if (!this._closed) this._open();
    }, this.reconnectWaitMs);
  }

  /** Handle every complete line (and MSG payload) in the buffer. @param {() => void} onInfo */
  _parse(onInfo) {
    for (;;) {
      const end = indexOfCrlf(this._buffer, 0);
      if (end < 0) return;
      const line = text.decode(this._buffer.subarray(0, end));
      const op = line.split(" ", 1)[0].toUpperCase();
      if (op === "MSG") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        const parts = line.split(" ").filter(Boolean);
        const size = Number(parts[parts.length - 1]);
        const start = end + 2;
        if (this._buffer.length < start + size + 2) return; // wait for the rest of the payload
        const payload = this._buffer.slice(start, start + size);
        this._buffer = this._buffer.subarray(start + size + 2);
        const sub = this._subs.get(Number(parts[2]));
        if (sub) {
          try {
            sub.callback(payload, parts[1]);
          } catch (error) {
            this.onStatus("error", `subscriber failed: ${error.message}`);
          }
        }
        continue;
      }
      this._buffer = this._buffer.subarray(end + 2);
      if (op === "INFO") {
        this.info = JSON.parse(line.slice(5));
        onInfo();
      } else if (op === "PING") {
        this._sendRaw(utf8.encode("PONG\r\n"));
      } else if (op === "PONG") {
        const pong = this._pongs.shift();
        if (pong) pong.resolve();
      } else if (op === "-ERR") {
        this.onStatus("error", `NATS error: ${line.slice(5)}`);
      }
      // +OK and anything unknown: nothing to do.
    }
  }

  /** @param {Uint8Array} bytes @returns {boolean} false when not connected */
  _sendRaw(bytes) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    this._ws.send(bytes);
    return true;
  }

  /** A PING round trip: everything sent before it has been processed by the server. @returns {Promise<void>} */
  flush() {
    return new Promise((resolve, reject) => {
      if (!this._sendRaw(utf8.encode("PING\r\n"))) {
        reject(new Error("NATS is not connected"));
        return;
      }
      this._pongs.push({ resolve, reject });
    });
  }

  /** @param {string} subject @param {NatsCallback} callback @returns {number} the sid */
  subscribe(subject, callback) {
    const sid = this._nextSid++;
    this._subs.set(sid, { subject, callback });
    this._sendRaw(utf8.encode(`SUB ${subject} ${sid}\r\n`));
    return sid;
  }

  /** @param {number} sid */
  unsubscribe(sid) {
    if (this._subs.delete(sid)) this._sendRaw(utf8.encode(`UNSUB ${sid}\r\n`));
  }

  /** Publish raw bytes; false when not connected (the message is dropped, like a driver must). @param {string} subject @param {Uint8Array} payload @returns {boolean} */
  publish(subject, payload) {
    const head = utf8.encode(`PUB ${subject} ${payload.length}\r\n`);
    return this._sendRaw(concat(concat(head, payload), CRLF));
  }

  close() {
    this._closed = true;
    clearTimeout(this._retry);
    this._retry = null;
    const ws = this._ws;
    this._ws = null;
    this.connected = false;
    if (ws) ws.close();
  }
}
