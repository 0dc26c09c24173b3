// A WebSocket that comes back: after a close the server asks the client to recover from
// (1012 service restart: a protocol server stopping for an upgrade or a node drain; 1013
// try again later; 1001 going away) or a lost connection (1006), it opens a new socket
// after a jittered, exponentially growing delay and calls onopen again, where the page
// rejoins its room (here the room is in the URL, and subscribing again is the page's own
// business). Any other close (1000, 1008, 4xxx, ...) or close() ends it.
//
//   const chat = ChannelappReconnect.connect(url, {
//     onopen(socket, reconnected) { ... },   // every time a socket opens
//     onmessage(event) { ... },
//     onclose(event, retryInMs) { ... },     // retryInMs null: no more attempts
//   });
//   chat.send(text); chat.close();
//
// The delay is "full jitter": uniform between 0 and min(maxDelayMs, baseDelayMs * 2^n),
// n the failed attempts in a row, so thousands of clients closed at once do not come back
// at once. n starts again at 0 once a socket stayed open stableMs.
(function (root) {
  "use strict";

  const RETRY_CODES = [1001, 1006, 1012, 1013];

  function delay(attempt, options, random) {
    const base = options.baseDelayMs;
    const ceiling = Math.min(options.maxDelayMs, base * Math.pow(2, attempt));
    return Math.round(random() * ceiling);
  }

  function connect(url, handlers, options) {
    const opts = Object.assign(
      { baseDelayMs: 500, maxDelayMs: 30000, stableMs: 10000 },
      options || {},
    );
    const WS = opts.WebSocket || root.WebSocket;
    const random = opts.random || Math.random;
    const now = opts.now || Date.now;
    const setTimer = opts.setTimeout || root.setTimeout.bind(root);
    const clearTimer = opts.clearTimeout || root.clearTimeout.bind(root);
    let socket = null;
    let attempt = 0;
    let opens = 0;
    let timer = null;
    let stopped = false;

    function open() {
      timer = null;
      const ws = new WS(url);
      socket = ws;
      let openedAt = null;
      ws.onopen = () => {
        openedAt = now();
        opens += 1;
        if (handlers.onopen) handlers.onopen(ws, opens > 1);
      };
      ws.onmessage = (event) => {
        if (handlers.onmessage) handlers.onmessage(event);
      };
      ws.onclose = (event) => {
        if (socket !== ws) return;
        socket = null;
        if (openedAt !== null && now() - openedAt >= opts.stableMs) attempt = 0;
        let retry = null;
        if (!stopped && RETRY_CODES.indexOf(event.code) >= 0) {
          retry = delay(attempt, opts, random);
          attempt += 1;
          timer = setTimer(open, retry);
        }
        if (handlers.onclose) handlers.onclose(event, retry);
      };
    }

    open();
    return {
      send(data) {
        if (!socket || socket.readyState !== 1) return false;
        socket.send(data);
        return true;
      },
      close() {
        stopped = true;
        if (timer !== null) clearTimer(timer);
        timer = null;
        const ws = socket;
        socket = null;
        if (ws) {
          ws.onclose = null;
          ws.close(1000);
        }
      },
      get socket() {
        return socket;
      },
    };
  }

  const api = { connect, delay, RETRY_CODES };
  if (typeof module === "object" && module.exports) module.exports = api;
  root.ChannelappReconnect = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
