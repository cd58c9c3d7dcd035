"""The web server's process: the page, the HTTP API and the WebSocket (aiohttp), on the shared state.

Runs in its own process (:class:`rt_host.live.web.WebServer` spawns
:func:`serve`), at a lower priority than the model's controller, attached to
the host's shared memory like the MIDI receiver. Nothing here can make the
audio wait: the callback never reads anything this process could be in the
middle of writing except single words and the event ring, whose one writer is
this process's single thread (the asyncio loop).

The API (the page uses nothing else; the README documents it):

* ``GET /api/state`` — the state as JSON: every predicted parameter (name,
  stage, unit, range, value in port units, normalized value, the model's
  newest prediction, ``source``: ``model`` | ``person`` | ``offset`` |
  ``held``), the amount, the bypass, the meters and the run's figures;
* ``POST /api/param`` ``{"name": "limiter.th", "normalized": 0.4}`` — a
  person takes the parameter (the same event as a MIDI knob: it glides there
  with the live smoother, and stays until released);
* ``POST /api/release`` ``{"name": …}`` hands one back to the model (it glides
  back), ``{}`` hands every one back;
* ``POST /api/amount`` ``{"value": 0.5}`` — 0 … 1: every model-set parameter
  between the chain's defaults and the model;
* ``POST /api/bypass`` ``{"on": true}`` — the level-matched A/B: the input
  played at the output's short-term loudness (of the 3 s before the switch);
* ``GET /ws`` — a WebSocket that pushes the same JSON as ``/api/state``
  :data:`PUSH_HZ` times a second.

Limits: bodies up to :data:`MAX_BODY` bytes (413), JSON objects with exactly
the documented fields, finite numbers in range (400, unknown parameters named
with their close matches), ``Content-Type: application/json`` (415), requests
per connection and overall bounded by token buckets (429), at most
:data:`MAX_SOCKETS` WebSockets (503). With a token every request but the
static files needs it (``Authorization: Bearer T`` or ``?token=T``): 401
without, 403 when wrong. Without a token (loopback only) the ``Host`` header
must name the loopback address (no DNS rebinding), and requests from pages of
other origins are refused (403).
"""

from __future__ import annotations

import asyncio
import difflib
import errno
import hmac
import json
import math
import os
import socket
import time
from collections import deque
from importlib import resources
from urllib.parse import urlsplit

import numpy as np

from rt_host.lifeline import become_child
from rt_host.live import shared
from rt_host.signals import db_to_gain

PUSH_HZ = 20.0  # state pushes per second on every WebSocket (and the meters' reading rate)
BYPASS_SLEW_DB_S = 4.0  # the A/B gain follows the chain's loudness at most this fast
PEAK_HOLD_S = 1.0  # the peaks shown are the highest of this last stretch
MAX_BODY = 4096  # bytes: every valid body is far smaller
CONNECTION_RATE, CONNECTION_BURST = 60.0, 120.0  # requests/s per TCP connection (a drag sends ~25/s)
GLOBAL_RATE, GLOBAL_BURST = 1000.0, 1000.0  # requests/s over all connections together
MAX_SOCKETS = 32
WEB_NICE = 5  # below the model's controller: on 2 cores a busy page must not make predictions late
SOURCES = {0: "model", 1: "person", 2: "offset"}  # state.held codes (rt_host.steer.kernel modes)
STATIC = ("index.html", "app.js", "style.css")
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ApiError(Exception):
    """A request the API refuses: an HTTP status and a one-line reason (sent as ``{"error": …}``)."""

    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class TokenBucket:
    """``rate`` requests a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# --- what the page sees and does ------------------------------------------------------------
class Surface:
    """The shared state as the page sees it (:meth:`snapshot`), and people's moves into the web ring.

    One instance per server process; only the asyncio loop's thread calls it,
    so it is the web event ring's one writer.
    """

    def __init__(self, state: shared.SharedState, chain, rate: int, held: list[str], title: str) -> None:
        from rt_host.live.meters import MeterReader
        from rt_host.lv2.parameters import ParameterTable

        self.state, self.chain, self.rate, self.title = state, chain, int(rate), title
        self.table = ParameterTable(chain.parameters, rate)  # the Hz limits the prepared chain plays with
        self.names = chain.parameter_names
        self.index = {n: j for j, n in enumerate(self.names)}
        self.held = set(held)
        self.meter = MeterReader(state, rate)
        self.meters: dict = {}
        self._peaks: deque[tuple[float, float | None, float | None]] = deque()
        self._json: str | None = None
        self._json_at = -1.0
        self.static = [
            {
                "name": p.name, "stage": p.stage, "symbol": p.symbol, "label": p.port.name, "unit": p.unit,
                "minimum": p.minimum, "maximum": p.maximum, "scale": p.scale, "default": p.default,
                "default_normalized": _round(float(u), 6),
            }
            for p, u in zip(chain.parameters, chain.default_normalized())
        ]  # fmt: skip

    # reading -------------------------------------------------------------------------------
    def read_meters(self, now: float) -> None:
        """Read the callback's meter sums (resets its peaks: only this loop calls it); keep the peak hold;
        while the A/B bypass plays, keep its gain on the chain's loudness."""
        m = self.meter.read()
        c = self.state.control
        if c[shared.CTL_BYPASS] > 0.5:
            # at most BYPASS_SLEW_DB_S: a new peak entering the 3 s the ceiling looks at moved the gain
            # by 0.7 dB from one reading to the next (measured on music); the callback plays it as a step
            old_db = 20 * math.log10(max(float(c[shared.CTL_BYPASS_GAIN]), 1e-6))
            new_db = 20 * math.log10(self.meter.bypass_gain())
            step = BYPASS_SLEW_DB_S / PUSH_HZ
            c[shared.CTL_BYPASS_GAIN] = db_to_gain(old_db + min(max(new_db - old_db, -step), step))
        self._peaks.append((now, m["in_peak_dbfs"], m["out_peak_dbfs"]))
        while self._peaks and self._peaks[0][0] < now - PEAK_HOLD_S:
            self._peaks.popleft()
        for k, key in ((1, "in_peak_dbfs"), (2, "out_peak_dbfs")):
            seen = [p[k] for p in self._peaks if p[k] is not None]
            m[key] = max(seen) if seen else None
        self.meters = m

    def snapshot(self) -> dict:
        """The state as JSON-ready data (see the module docstring)."""
        st = self.state
        applied = np.array(st.applied, dtype=np.float64)
        sources = np.array(st.held)
        values = self.table.to_port(applied)
        seq = int(st.header[shared.PRED_SEQ])
        predicted = np.array(st.pred[seq % 2], dtype=np.float64) if seq > 0 else None
        params = []
        for j, static in enumerate(self.static):
            row = dict(static)
            row["value"] = _round(float(values[j]), 6, significant=True)
            row["normalized"] = _round(float(applied[j]), 6)
            row["predicted"] = None if predicted is None else _round(float(predicted[j]), 6)
            row["source"] = "held" if static["name"] in self.held else SOURCES.get(int(sources[j]), "person")
            params.append(row)
        c, s, h = st.control, st.stats, st.header
        period = _finite(s[shared.STAT_PERIOD_US])
        latency = _finite(s[shared.STAT_LATENCY])
        rate = _finite(s[shared.STAT_RATE]) or self.rate
        n_lat = int(h[shared.LATENCIES])
        recent = st.event_latency_us[np.arange(max(0, n_lat - 32), n_lat) % shared.LATENCY_RING]
        stats = {
            "dsp_load_pct": _round(_finite(s[shared.STAT_DSP_LOAD]), 2),
            "xruns": _int(s[shared.STAT_XRUNS]),
            "callback_p99_us": _round(_finite(s[shared.STAT_CB_P99_US]), 1),
            "callback_max_us": _round(_finite(s[shared.STAT_CB_MAX_US]), 1),
            "callbacks_over_period": _int(s[shared.STAT_CB_OVER]),
            "period_us": _round(period, 1),
            "inference_p50_ms": _round(_finite(s[shared.STAT_INFER_P50_MS]), 2),
            "latency_frames": _int(s[shared.STAT_LATENCY]),
            "latency_ms": _round(None if latency is None else 1e3 * latency / rate, 2),
            "predictions": _int(s[shared.STAT_PREDICTIONS]),
            "late_predictions": _int(s[shared.STAT_LATE]),
            "seconds": _round(_finite(s[shared.STAT_SECONDS]), 2),
            "rate": _int(s[shared.STAT_RATE]) or self.rate,
            "block": _int(s[shared.STAT_BLOCK]),
            "control_latency_ms": _round(float(np.median(recent)) / 1e3, 2) if len(recent) else None,
        }
        on = bool(c[shared.CTL_BYPASS] > 0.5)
        gain = float(c[shared.CTL_BYPASS_GAIN])
        return {
            "title": self.title,
            "chain": self.chain.name,
            "time_s": _round(float(st.meters[shared.METER_FRAMES]) / self.rate, 3),
            "parameters": params,
            "amount": _round(float(c[shared.CTL_AMOUNT]), 4),
            "bypass": {"on": on, "gain_db": _round(20 * math.log10(gain), 2) if on and gain > 0 else None},
            "meters": self.meters,
            "stats": stats,
            "events": {
                "written": int(h[shared.EVENTS_WRITTEN + shared.WEB]),
                "applied": int(h[shared.EVENTS_APPLIED + shared.WEB]),
                "dropped": int(h[shared.EVENTS_DROPPED + shared.WEB]),
            },
        }

    def state_json(self, max_age: float = 0.5 / PUSH_HZ) -> str:
        """:meth:`snapshot` as text, built at most once per ``max_age`` seconds (shared by every client)."""
        now = time.monotonic()
        if self._json is None or now - self._json_at > max_age:
            self._json = json.dumps(self.snapshot(), allow_nan=False, separators=(",", ":"))
            self._json_at = now
        return self._json

    # people's moves ---------------------------------------------------------------------------
    def parameter(self, name) -> int:
        """The index of a parameter a person may move; :class:`ApiError` (400) naming close matches."""
        if not isinstance(name, str):
            raise ApiError(400, f"name must be a string (a parameter such as {self.names[0]!r})")
        j = self.index.get(name)
        if j is None:
            close = difflib.get_close_matches(name, self.names, n=3, cutoff=0.5)
            close += [n for n in self.names if n.rpartition(".")[2] == name and n not in close]
            hint = f"; did you mean {', '.join(close)}?" if close else "; GET /api/state lists them"
            raise ApiError(400, f"unknown parameter {name!r}{hint}", close_matches=close)
        if name in self.held:
            raise ApiError(400, f"{name} is held by the recipe: neither the model nor a person sets it")
        return j

    def _push(self, j: int, kind: int, value: float) -> None:
        if not self.state.push_event(shared.WEB, j, kind, value, time.monotonic_ns()):
            raise ApiError(503, "the audio has not taken the last 4096 moves yet (is it running?)")
        self._json = None  # the next state read shows the move

    def set_parameter(self, name, normalized) -> dict:
        j = self.parameter(name)
        u = _number(normalized, "normalized", 0.0, 1.0)
        self._push(j, shared.SET, u)
        value = float(self.table.to_port(np.full(len(self.names), u))[j])
        return {"ok": True, "name": name, "normalized": u, "value": _round(value, 6, significant=True)}

    def release(self, name=None) -> dict:
        if name is None:
            self._push(-1, shared.RELEASE_ALL, 0.0)
            return {"ok": True, "released": "all"}
        self._push(self.parameter(name), shared.RELEASE, 0.0)
        return {"ok": True, "released": name}

    def set_amount(self, value) -> dict:
        v = _number(value, "value", 0.0, 1.0)
        self._push(-1, shared.AMOUNT, v)
        return {"ok": True, "amount": v}

    def set_bypass(self, on) -> dict:
        """The A/B: ``on`` plays the input at the chain's short-term loudness (the last 3 s).

        The gain follows the chain's own output, which the callback keeps
        metering while the bypass plays (:meth:`MeterReader.bypass_gain`; the
        meter of what is played would chase its own tail: measured on music, a
        gain following it slid from 8.0 to 3.8 dB within a second), and it never
        lifts the input's peaks above −1 dBFS.
        """
        if not isinstance(on, bool):
            raise ApiError(400, f"on must be true or false (got {json.dumps(on)})")
        c = self.state.control
        if on:
            gain = self.meter.bypass_gain()
            c[shared.CTL_BYPASS_GAIN] = gain  # the gain first: the callback must never play a stale one
            c[shared.CTL_BYPASS] = 1.0
        else:
            c[shared.CTL_BYPASS] = 0.0
            gain = float(c[shared.CTL_BYPASS_GAIN])
        self._json = None
        gain_db = _round(20 * math.log10(gain), 2) if on and gain > 0 else None
        return {"ok": True, "on": on, "gain_db": gain_db}


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _int(v) -> int | None:
    v = _finite(v)
    return None if v is None else int(v)


def _round(v: float | None, digits: int, *, significant: bool = False) -> float | None:
    """``v`` for JSON: rounded to ``digits`` decimals (or significant digits); None and NaN are None."""
    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}") if significant else round(v, digits)


def _number(v, key: str, lo: float, hi: float) -> float:
    """A finite JSON number in ``[lo, hi]``, or :class:`ApiError` (400) saying which of those it is not."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ApiError(400, f"{key} must be a number from {lo:g} to {hi:g} (got {json.dumps(v)})")
    v = float(v)
    if not math.isfinite(v):
        raise ApiError(400, f"{key} must be a finite number (got {v})")
    if not lo <= v <= hi:
        raise ApiError(400, f"{key} must be from {lo:g} to {hi:g} (got {v:g})")
    return v


def _fields(data: dict, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(data) - set(required) - set(optional))
    expected = ", ".join(required + optional) or "none"
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; expected: {expected}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ApiError(400, f"missing field(s) {', '.join(map(repr, missing))}; expected: {expected}")


# --- the aiohttp application ---------------------------------------------------------------
def build_app(surface: Surface, token: str | None, loopback_names: set[str] | None):
    """The application: routes, the guard (rate, host, origin, token, body checks) and the push loop.

    ``loopback_names``: the host names the ``Host`` header may carry when no
    token guards the server (None: any, as a token does the guarding).
    """
    from aiohttp import WSMsgType, web

    app = web.Application(client_max_size=MAX_BODY, middlewares=[])
    pages = {
        name: resources.files("rt_host.live.web").joinpath("static", name).read_bytes() for name in STATIC
    }
    per_connection: dict[tuple, TokenBucket] = {}
    overall = TokenBucket(GLOBAL_RATE, GLOBAL_BURST)
    sockets: set = set()
    pushes = {"event": asyncio.Event()}  # set, and replaced by a fresh one, at every push

    def error(status: int, message: str, **extra) -> web.Response:
        headers = dict(SECURITY_HEADERS)
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="deepafx-rt"'
        return web.json_response({"error": message, **extra}, status=status, headers=headers)

    def check_token(request) -> None:
        if token is None:
            return
        given = None
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        elif "token" in request.query:
            given = request.query["token"]
        if not given:
            raise ApiError(401, "this server needs its token: open the address the host printed "
                                "(…/?token=…) or send Authorization: Bearer TOKEN")  # fmt: skip
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(403, "wrong token")

    @web.middleware
    async def guard(request, handler):
        """Rate, origin, host and token checks before any handler; errors as JSON."""
        now = time.monotonic()
        try:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            key = tuple(peer) if peer else ("?",)
            bucket = per_connection.get(key)
            if bucket is None:
                if len(per_connection) > 4096:  # forget idle connections
                    for k in [k for k, b in per_connection.items() if now - b.last > 10.0]:
                        del per_connection[k]
                bucket = per_connection[key] = TokenBucket(CONNECTION_RATE, CONNECTION_BURST)
            if not bucket.take(now) or not overall.take(now):
                raise ApiError(429, "too many requests; slow down")
            if loopback_names is not None and not _host_ok(request, loopback_names):
                raise ApiError(
                    403,
                    f"unexpected Host header {request.host!r} (a loopback server answers "
                    "only to its own addresses: no DNS rebinding)",
                )
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
                raise ApiError(403, "requests from other sites' pages are refused")
            if not request.path.startswith("/static/"):
                check_token(request)
            if request.method == "POST":
                if request.content_length is not None and request.content_length > MAX_BODY:
                    raise ApiError(413, f"the body is over {MAX_BODY} bytes")
                if request.content_type != "application/json":
                    raise ApiError(415, "send the body as Content-Type: application/json")
            response = await handler(request)
        except ApiError as exc:
            return error(exc.status, exc.message, **exc.extra)
        except web.HTTPException as exc:
            if exc.status == 413:
                return error(413, f"the body is over {MAX_BODY} bytes")
            raise
        if not isinstance(response, web.WebSocketResponse):
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
        return response

    app.middlewares.append(guard)

    async def body(request) -> dict:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, f"the body is over {MAX_BODY} bytes") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ApiError(400, f"malformed JSON: {str(exc)[:120]}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data

    def page(name: str):
        content_type = CONTENT_TYPES[os.path.splitext(name)[1]]

        async def handler(_request):
            return web.Response(body=pages[name], content_type=content_type, charset="utf-8")

        return handler

    async def get_state(_request):
        return web.Response(text=surface.state_json(), content_type="application/json")

    async def post_param(request):
        data = await body(request)
        _fields(data, ("name", "normalized"))
        return web.json_response(surface.set_parameter(data["name"], data["normalized"]))

    async def post_release(request):
        data = await body(request)
        _fields(data, (), ("name",))
        return web.json_response(surface.release(data["name"]) if "name" in data else surface.release())

    async def post_amount(request):
        data = await body(request)
        _fields(data, ("value",))
        return web.json_response(surface.set_amount(data["value"]))

    async def post_bypass(request):
        data = await body(request)
        _fields(data, ("on",))
        return web.json_response(surface.set_bypass(data["on"]))

    async def websocket(request):
        if len(sockets) >= MAX_SOCKETS:
            raise ApiError(503, f"{MAX_SOCKETS} pages are connected already")
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_BODY, compress=False)
        await ws.prepare(request)
        sockets.add(ws)

        async def send_loop():
            # the newest state at each push; a slow page skips pushes instead of queueing them
            try:
                await ws.send_str(surface.state_json())
                while not ws.closed:
                    await pushes["event"].wait()
                    await ws.send_str(surface.state_json())
            except (ConnectionError, RuntimeError):
                pass  # the page went away

        sender = asyncio.create_task(send_loop())
        try:
            async for msg in ws:  # the socket only pushes; what a page sends is ignored
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            sockets.discard(ws)
        return ws

    async def ticker():
        """Read the meters and push the state, :data:`PUSH_HZ` times a second, until the host says stop."""
        loop = asyncio.get_running_loop()
        step = 1.0 / PUSH_HZ
        due = loop.time()
        while surface.state.header[shared.STOP] == 0:
            surface.read_meters(time.monotonic())
            if sockets:
                surface.state_json(max_age=0.0)
                event, pushes["event"] = pushes["event"], asyncio.Event()
                event.set()
            due = max(due + step, loop.time())
            await asyncio.sleep(due - loop.time())

    app["ticker"] = ticker
    app["sockets"] = sockets
    app.router.add_get("/", page("index.html"))
    app.router.add_get("/static/app.js", page("app.js"))
    app.router.add_get("/static/style.css", page("style.css"))
    app.router.add_get("/api/state", get_state)
    app.router.add_post("/api/param", post_param)
    app.router.add_post("/api/release", post_release)
    app.router.add_post("/api/amount", post_amount)
    app.router.add_post("/api/bypass", post_bypass)
    app.router.add_get("/ws", websocket)
    return app


def _host_ok(request, names: set[str]) -> bool:
    """The Host header names this machine and the port the request came in on."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if not sock:
        return False
    host = request.host.lower()
    if host.endswith("]") or ":" not in host:  # no port: port 80
        name, port = host, "80"
    else:
        name, _, port = host.rpartition(":")
    return name in names and port == str(sock[1])


def loopback_names(host: str) -> set[str]:
    """The host names a browser on this machine may use for a loopback bind (for the Host check)."""
    return {"127.0.0.1", "localhost", "[::1]", f"[{host.lower()}]" if ":" in host else host.lower()}


def _bind_error(exc: OSError, host: str, port: int) -> str:
    where = f"cannot serve the control page on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is taken (another program listens there; choose another with --web)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges)"
    if isinstance(exc, socket.gaierror):
        return f"{where}: cannot resolve {host!r}"
    return f"{where}: {exc.strerror or exc}"


async def _run(conn, surface: Surface, host: str, port: int, token: str | None) -> None:
    from aiohttp import web

    state = surface.state
    app = build_app(surface, token, None if token else loopback_names(host))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port, backlog=128).start()
        except OSError as exc:
            state.header[shared.WEB_READY] = -1
            conn.send(("error", _bind_error(exc, host, port)))
            return
        ticker = asyncio.create_task(app["ticker"]())
        state.header[shared.WEB_READY] = 1
        conn.send(("ready", runner.addresses[0][1]))
        await ticker  # returns when the host sets STOP
    finally:
        for ws in list(app["sockets"]):
            await ws.close()
        await runner.cleanup()


def serve(conn, shm_name: str, layout: shared.Layout, spec: dict, rate: int, held: list[str], title: str,
          host: str, port: int, token: str | None) -> None:  # fmt: skip
    """The process's main: attach, serve until the host sets ``STOP``; errors go back as one line."""
    become_child(WEB_NICE)  # a killed host must not leave a server listening on its port
    state = shared.SharedState.attach(shm_name, layout)
    try:
        from rt_host.lv2 import Chain, ChainSpec

        surface = Surface(state, Chain(ChainSpec.from_dict(spec)), rate, held, title)
        asyncio.run(_run(conn, surface, host, port, token))
    except Exception as exc:  # one line back to the host, which raises it
        if state.header[shared.WEB_READY] != 1:
            state.header[shared.WEB_READY] = -1
            try:
                conn.send(("error", f"the web server stopped: {exc}"))
            except OSError:
                pass
        else:
            print(f"deepafx-rt: error: the web server stopped: {exc}", flush=True)
    finally:
        conn.close()
        state.close()
