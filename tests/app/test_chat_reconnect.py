"""The chat page's reconnecting WebSocket (``examples/chat/reconnect.js``) under node, with a
fake WebSocket and fake timers: which closes it comes back from, its jittered exponential
delays, and that it opens the room's URL again."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "app" / "channelapp" / "examples" / "chat" / "reconnect.js"

DRIVER = r"""
const api = require(process.argv[1]);
const sockets = [];
class FakeWS {
  constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
  send(data) { this.sent.push(data); }
  close(code) { this.closedWith = code; }
}
let clock = 0;
const timers = [];
const events = [];
function run(random) {
  const opts = {
    WebSocket: FakeWS, random, now: () => clock,
    setTimeout: (fn, ms) => { timers.push({ fn, ms }); return timers.length; },
    clearTimeout: (id) => { timers[id - 1].cleared = true; },
  };
  return api.connect("ws://h/ws/chat/lobby/", {
    onopen: (ws, again) => events.push(["open", again]),
    onclose: (e, retry) => events.push(["close", e.code, retry]),
  }, opts);
}
function opened(ws) { ws.readyState = 1; ws.onopen(); }
function closed(ws, code) { ws.readyState = 3; ws.onclose({ code, reason: "" }); }
function fire() { const t = timers[timers.length - 1]; if (!t.cleared) t.fn(); return t.ms; }

// Worst-case jitter (random 1): the ceilings, doubling, capped.
const c = run(() => 0.999999);
opened(sockets[0]);
const sentOpen = c.send("hi");
const ceilings = [];
for (let i = 0; i < 9; i++) { closed(sockets[sockets.length - 1], 1012); ceilings.push(fire()); }
opened(sockets[sockets.length - 1]);
clock += 10000;  // open long enough: the next failure starts from the base delay again
closed(sockets[sockets.length - 1], 1013);
const afterStable = fire();
for (const code of [1001, 1006]) { closed(sockets[sockets.length - 1], code); fire(); }
const urls = new Set(sockets.map((s) => s.url));
const before = sockets.length;
closed(sockets[sockets.length - 1], 1000);  // a normal close: no retry
const afterNormal = sockets.length - before;
const sentClosed = c.send("lost");

// Full jitter: spread over [0, ceiling].
let seed = 1;
const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
const spread = [];
for (let i = 0; i < 200; i++) spread.push(api.delay(3, { baseDelayMs: 500, maxDelayMs: 30000 }, rnd));

// close() by the page: no retry, a pending retry cancelled.
timers.length = 0;
const d = run(() => 0.5);
opened(sockets[sockets.length - 1]);
closed(sockets[sockets.length - 1], 1012);
const pending = timers.length;
const n = sockets.length;
d.close();
const cancelled = timers[timers.length - 1].cleared === true;
console.log(JSON.stringify({
  ceilings, afterStable, urls: [...urls], afterNormal, sentOpen, sentClosed, spread,
  pending, cancelled, socketsAfterClose: sockets.length - n, events,
  codes: api.RETRY_CODES,
}));
"""


def run_driver() -> dict:  # type: ignore[type-arg]
    node = shutil.which("node")
    assert node, "node is installed by .ci/run"
    proc = subprocess.run(
        [node, "-e", DRIVER, str(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result: dict = json.loads(proc.stdout)  # type: ignore[type-arg]
    return result


def test_reconnects_with_jittered_exponential_backoff_and_rejoins() -> None:
    r = run_driver()
    assert r["codes"] == [1001, 1006, 1012, 1013]
    # Ceilings double from 0.5 s and stop at 30 s.
    assert r["ceilings"] == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    assert r["afterStable"] == 500  # a socket that stayed open resets the backoff
    assert r["urls"] == ["ws://h/ws/chat/lobby/"]  # the same room each time
    opens = [e for e in r["events"] if e[0] == "open"]
    # First connection: opened, then reopened after its closes; the second: opened once.
    assert [again for _, again in opens] == [False, True, False]
    assert r["afterNormal"] == 0  # 1000: not reconnected
    assert ["close", 1000, None] in r["events"]
    assert r["sentOpen"] is True and r["sentClosed"] is False
    # Full jitter: anywhere in [0, 4 s], not bunched.
    spread = r["spread"]
    assert 0 <= min(spread) < 400 and 3600 < max(spread) <= 4000
    assert 1400 < sum(spread) / len(spread) < 2600
    # The page's own close ends it: the pending retry is cancelled.
    assert r["pending"] == 1 and r["cancelled"] is True and r["socketsAfterClose"] == 0
