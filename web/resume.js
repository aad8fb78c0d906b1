// ResumingWebSocket: a browser WebSocket that comes back. It takes a list of URLs (nodes
// of one wsworker cluster), offers the subprotocol wsworker.resume.v1 (docs/RESUME.md) and,
// when the connection is lost (1001, 1006, 1011, 1012, 1013), reconnects to the next URL,
// round robin, after a jittered exponential backoff, and resumes its session: the server
// replays exactly what was missed, or says per topic why it cannot (the `resumed` event).
// Messages come as a WebSocket's do, payload only; duplicates (topic, offset) are dropped.
// The session (token and positions) is kept in sessionStorage, so a reload resumes too.
// A server that does not agree to the subprotocol gets plain WebSocket traffic (browsers
// fail such a handshake: it is tried again at once without the offer) and reconnects
// too, without resume. A classic script: <script src="/resume.js"></script>
// defines globalThis.ResumingWebSocket.
//
//   const ws = new ResumingWebSocket(["ws://a/?room=x", "ws://b/?room=x"]);
//   ws.onmessage = (e) => show(e.data);
//   ws.addEventListener("resumed", (e) => e.detail.failed.length && refetch());
//
// Beyond WebSocket: `open` fires on every connection made (after the server's answer), a
// `reconnecting` event (detail: code, reason, url, delay) on every loss, and `send` queues
// (at most `maxQueue` messages) until the connection is up. Sends are at most once: one
// in flight when a node dies is lost. Options: storageKey, minDelay (ms, 100), maxDelay
// (ms, 5000), maxQueue (1000).
(function (global) {
  "use strict";
  const PROTOCOL = "wsworker.resume.v1";
  const RECONNECT = new Set([1001, 1006, 1011, 1012, 1013]);
  const [CONNECTING, OPEN, CLOSING, CLOSED] = [0, 1, 2, 3];

  function store(key, value) {
    try {
      if (value) global.sessionStorage.setItem(key, JSON.stringify(value));
      else global.sessionStorage.removeItem(key);
    } catch (e) { /* no storage (privacy settings): resume within this page only */ }
  }

  function stored(key) {
    try {
      const session = JSON.parse(global.sessionStorage.getItem(key));
      return typeof session.token === "string" && typeof session.positions === "object" ? session : null;
    } catch (e) {
      return null;
    }
  }

  class ResumingWebSocket extends EventTarget {
    constructor(urls, options = {}) {
      super();
      this.urls = [].concat(urls);
      if (!this.urls.length) throw new SyntaxError("ResumingWebSocket needs a URL");
      this.binaryType = "blob";
      this.readyState = CONNECTING;
      this.protocol = this.extensions = "";
      this._key = options.storageKey || "wsworker.resume " + this.urls.join(" ");
      this._minDelay = options.minDelay || 100;
      this._maxDelay = options.maxDelay || 5000;
      this._maxQueue = options.maxQueue || 1000;
      this._index = this._attempt = 0;
      this._queue = [];
      // { token, positions: { TOPIC: [EPOCH, OFFSET, ID] } }: the body of `resume`.
      this._session = stored(this._key);
      for (const type of ["open", "message", "close", "error"]) {
        this["on" + type] = null;
        this.addEventListener(type, (e) => { if (typeof this["on" + type] === "function") this["on" + type](e); });
      }
      this._connect(); // a bad first URL throws, as new WebSocket does
    }

    get url() { return this.urls[this._index]; }
    get bufferedAmount() { return this._ws ? this._ws.bufferedAmount : 0; }

    send(data) {
      if (this.readyState >= CLOSING) return; // as WebSocket: dropped silently
      if (this.readyState === OPEN && this._ws.readyState === OPEN) return this._ws.send(data);
      if (this._queue.length >= this._maxQueue) throw new DOMException("send queue full", "QuotaExceededError");
      this._queue.push(data);
    }

    close(code, reason) {
      if (this.readyState >= CLOSING) return;
      if (this._ws) this._ws.close(code, reason); // throws on a bad code, as WebSocket does
      else setTimeout(() => this._end({ code: code || 1005, reason: reason || "", wasClean: true }));
      this._stopped = true;
      clearTimeout(this._timer);
      this.readyState = CLOSING;
    }

    // Browsers fail a handshake whose answer agrees to no subprotocol (a server without
    // resume): an attempt that offered it and failed before opening is made again at once
    // without it, unless this object has had a session (then the node is down, not plain).
    _connect(plain) {
      const ws = (this._ws = new WebSocket(this.url, plain ? [] : PROTOCOL));
      const fallBack = !plain && !this._hadSession;
      let opened = false;
      this._origin = new URL(ws.url).origin;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        opened = true;
        this.protocol = ws.protocol;
        this.extensions = ws.extensions;
        if (ws.protocol !== PROTOCOL) return this._up(); // no resume here: plain traffic
        ws.send(this._session ? "resume\n" + JSON.stringify(this._session) : "start\n");
      };
      ws.onmessage = (e) => {
        if (ws.protocol !== PROTOCOL) return this._deliver(e.data);
        try { this._frame(e.data); } catch (err) { console.warn("resume.js: a bad frame", err); }
      };
      ws.onerror = () => { if (opened || !fallBack) this.dispatchEvent(new Event("error")); };
      ws.onclose = (e) => {
        if (ws !== this._ws) return;
        if (!opened && fallBack && !this._stopped) return this._connect(true);
        this._lost(e);
      };
    }

    _lost({ code, reason, wasClean }) {
      this._ws = null;
      if (this._stopped || !RECONNECT.has(code)) return this._end({ code, reason, wasClean });
      this.readyState = CONNECTING;
      this._index = (this._index + 1) % this.urls.length;
      const ceiling = Math.min(this._maxDelay, this._minDelay * 2 ** this._attempt++);
      const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
      this.dispatchEvent(new CustomEvent("reconnecting", { detail: { code, reason, url: this.url, delay } }));
      this._timer = setTimeout(() => {
        try { this._connect(); } catch (err) { this._lost({ code: 1006, reason: String(err), wasClean: false }); }
      }, delay);
    }

    _end(init) {
      this.readyState = CLOSED;
      store(this._key, (this._session = null)); // the session ends with this object
      this.dispatchEvent(new CloseEvent("close", init));
    }

    // The connection is usable: what waited goes first, then the page hears of it.
    _up() {
      this.readyState = OPEN;
      this._attempt = 0;
      for (const data of this._queue.splice(0)) this._ws.send(data);
      this.dispatchEvent(new Event("open"));
    }

    _deliver(payload) {
      const data = typeof payload === "string" || this.binaryType !== "blob" ? payload : new Blob([payload]);
      this.dispatchEvent(new MessageEvent("message", { data, origin: this._origin }));
    }

    // One server frame: HEAD "\n" BODY, text or binary (docs/RESUME.md, "Server to client").
    _frame(frame) {
      const text = typeof frame === "string";
      const nl = text ? frame.indexOf("\n") : new Uint8Array(frame).indexOf(10);
      if (nl < 0) throw new Error("a frame without a head");
      const head = text ? frame.slice(0, nl) : new TextDecoder().decode(frame.slice(0, nl));
      const body = frame.slice(nl + 1);
      const words = head.split(" ");
      if (words[0] === "v") return this._deliver(body);
      if (words[0] === "m") return this._placed(words, body);
      const json = JSON.parse(typeof body === "string" ? body : new TextDecoder().decode(body));
      const positions = this._session ? this._session.positions : {};
      switch (words[0]) {
        case "hello":
          this._hadSession = true;
          this._save({ token: json.token, positions: json.positions || {} });
          return this._up();
        case "resumed": {
          this._hadSession = true;
          const kept = {}; // recovered topics go on from the client's place, others anew
          for (const topic of json.recovered || []) if (positions[topic]) kept[topic] = positions[topic];
          this._save({ token: json.token, positions: Object.assign(kept, json.positions) });
          this._up();
          const detail = { session: json.session, recovered: json.recovered || [], failed: json.failed || [] };
          return this.dispatchEvent(new CustomEvent("resumed", { detail }));
        }
        case "joined": { // taken unless the client has a later place in the same epoch
          const [have, got] = [positions[json.topic], json.position];
          if (!have || have[0] !== got[0] || have[1] < got[1]) positions[json.topic] = got;
          return this._save(this._session);
        }
        case "left":
          delete positions[json.topic];
          return this._save(this._session);
        default:
          throw new Error("unknown head " + JSON.stringify(head));
      }
    }

    // `m TOPIC OFFSET ID[ EPOCH]`: delivered unless the client has it (same epoch, offset at
    // or before its own).
    _placed([, key, offset, id, epoch], body) {
      if (!/^\d+$/.test(offset) || !/^[0-9a-f]{16}$/.test(id) || !/^\d*$/.test(epoch || "")) {
        throw new Error("a bad head: m " + key);
      }
      const topic = decodeURIComponent(key);
      const positions = this._session ? this._session.positions : {};
      const have = positions[topic];
      epoch = epoch || (have && have[0]);
      if (have && have[0] === epoch && Number(offset) <= have[1]) return;
      if (epoch && this._session) {
        positions[topic] = [epoch, Number(offset), id];
        this._save(this._session);
      }
      this._deliver(body);
    }

    _save(session) {
      store(this._key, (this._session = session));
    }
  }

  for (const [i, name] of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].entries()) {
    ResumingWebSocket[name] = ResumingWebSocket.prototype[name] = i;
  }
  ResumingWebSocket.PROTOCOL = PROTOCOL;
  global.ResumingWebSocket = ResumingWebSocket;
})(globalThis);
