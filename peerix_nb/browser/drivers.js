// @ts-check
// Signaling drivers for the browser peer (docs/PROTOCOL.md, "Namespaces and drivers").
//
// A driver moves opaque byte messages by namespace (a list of string parts): subscribe,
// unsubscribe, dispatch. It has an `active` flag and emits "active", "inactive" and "error";
// while inactive nothing is dispatched, and a joined peer announces itself again when its
// driver becomes active. A driver is active unless it says otherwise (as in Peerix): a custom
// driver that implements the three calls works as is; drivers that must connect first
// (NatsDriver, BroadcastChannelDriver) start inactive. The kernel relay driver lives in
// browser_peer.js (it needs the comm).

import { Emitter } from "./events.js";
import { PeerixError, toBytes } from "./codec.js";

/** @typedef {import("./nats.js").NatsConnection} NatsConnection */
/** What a subscriber gets: one message's bytes. @typedef {(bytes: Uint8Array) => void} DriverHandler */

export class Driver extends Emitter {
  /** @param {{ active?: boolean }} [options] active: false for a driver that must connect first */
  constructor({ active = true } = {}) {
    super();
    this.active = !!active;
  }

  /** Say whether messages can go out now (an "active" or "inactive" event on a change). @param {boolean} active */
  setActive(active) {
    active = !!active;
    if (active === this.active) return;
    this.active = active;
    const name = active ? "active" : "inactive";
    this.emit(name, { name, state: name });
  }

  /** An "error" event (error wrapped into a PeerixError). @param {any} error */
  reportError(error) {
    const wrapped = error instanceof PeerixError
      ? error
      : new PeerixError("PEER_SIGNALING_ERROR", String(error && error.message ? error.message : error), error);
    this.emit("error", { name: "error", error: wrapped });
  }

  /** @param {string[]} _namespace @param {DriverHandler} _handler @returns {Promise<void>} */
  async subscribe(_namespace, _handler) { throw new Error("not implemented"); }
  /** @param {string[]} _namespace @param {DriverHandler} _handler @returns {Promise<void>} */
  async unsubscribe(_namespace, _handler) { throw new Error("not implemented"); }
  /** @param {string[]} _namespace @param {Uint8Array} _message @returns {Promise<void>} */
  async dispatch(_namespace, _message) { throw new Error("not implemented"); }
  close() {}
}

/** Handlers by key, shared by the drivers that deliver locally. */
class Subscribers {
  constructor() {
    /** @type {Map<string, DriverHandler[]>} */
    this.map = new Map();
  }
  /** @param {string} key @param {DriverHandler} handler */
  add(key, handler) {
    if (!this.map.has(key)) this.map.set(key, []);
    this.map.get(key).push(handler);
  }
  /** @param {string} key @param {DriverHandler} handler */
  remove(key, handler) {
    const list = this.map.get(key);
    if (!list) return;
    const i = list.indexOf(handler);
    if (i >= 0) list.splice(i, 1);
    if (!list.length) this.map.delete(key);
  }
  /** @param {string} key @param {Uint8Array} bytes @param {(error: any) => void} onError */
  deliver(key, bytes, onError) {
    for (const handler of [...(this.map.get(key) || [])]) {
      try {
        handler(bytes);
      } catch (error) {
        onError(error);
      }
    }
  }
}

/**
 * BroadcastChannel(name) signaling: pages and tabs of one browser (same origin) without any
 * server. Posts `[parts.join(':'), bytes]`. A BroadcastChannel never delivers a message to
 * the object that posted it, so subscribers of this same driver object get it locally.
 */
export class BroadcastChannelDriver extends Driver {
  /** @param {string} [name] the BroadcastChannel's name */
  constructor(name = "peerix") {
    super({ active: false }); // until the channel exists (just below; it throws if it cannot)
    this.name = name;
    this._subs = new Subscribers();
    this._channel = new BroadcastChannel(name);
    this._channel.onmessage = (event) => this._receive(event.data);
    this._channel.onmessageerror = () => this.reportError("undecodable BroadcastChannel message");
    this.setActive(true);
  }

  /** @param {any} data */
  _receive(data) {
    if (!Array.isArray(data) || data.length !== 2 || typeof data[0] !== "string") return; // not ours
    let bytes;
    try {
      bytes = toBytes(data[1]);
    } catch (error) {
      this.reportError(error);
      return;
    }
    this._subs.deliver(data[0], bytes, (e) => this.reportError(e));
  }

  /** @param {string[]} namespace @param {DriverHandler} handler */
  async subscribe(namespace, handler) { this._subs.add(namespace.join(":"), handler); }
  /** @param {string[]} namespace @param {DriverHandler} handler */
  async unsubscribe(namespace, handler) { this._subs.remove(namespace.join(":"), handler); }

  /** @param {string[]} namespace @param {Uint8Array} message */
  async dispatch(namespace, message) {
    if (!this.active) return;
    const key = namespace.join(":");
    const bytes = toBytes(message);
    this._channel.postMessage([key, bytes]);
    setTimeout(() => this._subs.deliver(key, bytes, (e) => this.reportError(e)), 0);
  }

  close() {
    this._channel.close();
    this.setActive(false);
  }
}

/**
 * NATS over WebSocket: subject = [prefix, ...parts] with empty parts dropped, joined by ".".
 * Inactive until connected; a lost connection is inactive, a reconnect active again.
 */
export class NatsDriver extends Driver {
  /** @param {NatsConnection} connection @param {string} [prefix] first subject tokens ("" for none) */
  constructor(connection, prefix = "peerix") {
    super({ active: false }); // until connected
    this.prefix = prefix;
    this.nc = connection;
    /** @type {Map<DriverHandler, Map<string, number[]>>} handler -> subject -> [sid] */
    this._sids = new Map();
    const previous = connection.onStatus;
    connection.onStatus = (status, detail) => {
      if (status === "connected") this.setActive(true);
      else if (status === "disconnected") this.setActive(false);
      else if (status === "error") this.reportError(detail);
      previous(status, detail);
    };
  }

  /** The NATS subject of `namespace`; throws if a part cannot be a token. @param {string[]} namespace @returns {string} */
  subject(namespace) {
    const tokens = [...(this.prefix ? this.prefix.split(".") : []), ...namespace.filter((p) => p !== "")];
    for (const token of tokens) {
      if (!token || /[.*>\s]/.test(token)) {
        throw new PeerixError("PEER_SIGNALING_ERROR",
          `namespace part ${JSON.stringify(token)} cannot be a NATS subject token (use signaling hashing)`);
      }
    }
    return tokens.join(".");
  }

  async connect() {
    await this.nc.connect();
    this.setActive(this.nc.connected);
  }

  /** @param {string[]} namespace @param {DriverHandler} handler */
  async subscribe(namespace, handler) {
    const subject = this.subject(namespace);
    const sid = this.nc.subscribe(subject, (payload) => handler(payload));
    if (!this._sids.has(handler)) this._sids.set(handler, new Map());
    const bySubject = this._sids.get(handler);
    if (!bySubject.has(subject)) bySubject.set(subject, []);
    bySubject.get(subject).push(sid);
    // Wait until the server has the subscription: a JOIN sent right after must find us.
    if (this.nc.connected) await this.nc.flush();
  }

  /** @param {string[]} namespace @param {DriverHandler} handler */
  async unsubscribe(namespace, handler) {
    const subject = this.subject(namespace);
    const sids = this._sids.get(handler)?.get(subject);
    if (sids && sids.length) this.nc.unsubscribe(sids.pop());
  }

  /** @param {string[]} namespace @param {Uint8Array} message */
  async dispatch(namespace, message) {
    const subject = this.subject(namespace);
    if (!this.active) return;
    this.nc.publish(subject, toBytes(message));
  }

  close() {
    this.nc.close();
    this.setActive(false);
  }
}
