"""The web control surface of the live host: watch the model steer, take any knob, blend, compare.

``deepafx-rt live … --web [HOST:]PORT`` serves a page (and the HTTP API the
page itself uses) from **another process**: an aiohttp server
(:mod:`rt_host.live.web.app`) attached to the host's shared memory
(:mod:`rt_host.live.shared`). It only ever

* reads what the audio callback publishes (the parameters it plays and who
  sets them, the meters, the run's figures), and
* writes people's moves into the web event ring (one writer: this process)
  and the A/B bypass control words,

so no request — however many, however malformed — can delay the audio: the
callback is native code in the host's process and never waits for anything
here (:mod:`rt_host.live.jack_process`).

Safe by default: it binds 127.0.0.1; any other address needs a token (one is
generated and printed with the URL when none is given); every field is
validated, bodies and request rates are bounded (:mod:`.app` has the limits).

This module is the host's side: :func:`parse_bind` (the host checks the
address before anything starts) and :class:`WebServer` (start the process,
wait until it listens, stop it).
"""

from __future__ import annotations

import ipaddress
import multiprocessing as mp
import re
import secrets
import socket
import sys
import time
from dataclasses import dataclass

from rt_host.errors import DeepAFxError
from rt_host.lifeline import stop_child
from rt_host.live import shared

DEFAULT_HOST = "127.0.0.1"
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{8,256}")  # URL-safe: it goes into the page's address as is
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*")


class WebError(DeepAFxError):
    """The control page cannot be served (a bad address or token, a port in use)."""


@dataclass(frozen=True)
class Bind:
    """Where the page is served, and whether a token guards it."""

    host: str  # an IP literal (IPv6 without brackets) or a host name
    port: int  # 0: any free port (the started server says which)
    token: str | None  # as given; WebServer generates one for a non-loopback bind
    loopback: bool  # only this machine can connect

    def netloc(self, port: int | None = None) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):  # every interface: name the machine in the printed address
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port if port is None else port}"


def parse_bind(bind: str, token: str | None = None) -> Bind:
    """``"[HOST:]PORT"`` (IPv6 hosts in brackets) and the token, checked; one-line :class:`WebError`.

    >>> parse_bind("8080")
    Bind(host='127.0.0.1', port=8080, token=None, loopback=True)
    >>> parse_bind("0.0.0.0:8080").loopback
    False
    """
    text = str(bind).strip()
    where = f"--web {bind!r}"
    m = re.fullmatch(r"(?:\[(?P<v6>[^\]]+)\]:|(?P<host>[^:\[\]]*):)?(?P<port>[^:]*)", text)
    if not text or m is None:
        raise WebError(f"{where}: expected [HOST:]PORT, e.g. 8080, 127.0.0.1:8080 or [::1]:8080")
    host = m["v6"] if m["v6"] is not None else (m["host"] or DEFAULT_HOST)
    port_text = m["port"]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise WebError(f"{where}: the port must be a number from 0 to 65535 (0: any free port)")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if m["v6"] is not None:
            raise WebError(f"{where}: {host!r} in brackets is not an IPv6 address") from None
        if not _HOSTNAME.fullmatch(host):
            raise WebError(f"{where}: {host!r} is neither an IP address nor a host name") from None
        loopback = host.lower() == "localhost"
    else:
        loopback = ip.is_loopback
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise WebError(
            "--web-token must be 8 to 256 characters from A-Z a-z 0-9 . _ ~ - (it goes into the URL)"
        )
    return Bind(host, int(port_text), token, loopback)


class WebServer:
    """The web control surface's process, started and stopped by the live host.

    ``bundle``: the run's model bundle, if any (its recipe-held parameters are
    shown as held and cannot be taken). :meth:`start` returns once the server
    listens (``state.header[WEB_READY]``) and prints the page's address; a port
    in use, an address not on this machine, … is one :class:`WebError`.
    """

    def __init__(self, bind: str, token: str | None, state: shared.SharedState, chain, rate: int, *,
                 bundle=None) -> None:  # fmt: skip
        self.bind = parse_bind(bind, token)
        self.generated_token = self.bind.token is None and not self.bind.loopback
        self.token = secrets.token_urlsafe(18) if self.generated_token else self.bind.token
        self.state, self.chain, self.rate = state, chain, int(rate)
        held = getattr(bundle, "held", None)
        self.held = list(held.port) if held else []
        self.title = getattr(bundle, "task", None) or chain.name
        self.port: int | None = None
        self._proc: mp.Process | None = None

    @property
    def url(self) -> str:
        """The page's address (with the token, if one guards it); known once started."""
        url = f"http://{self.bind.netloc(self.port)}/"
        return url + (f"?token={self.token}" if self.token else "")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self, timeout: float = 30.0, announce: bool = True) -> None:
        from rt_host.live.web.app import serve

        ctx = mp.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        self.state.header[shared.WEB_READY] = 0
        self._proc = ctx.Process(
            target=serve,
            args=(send, self.state.shm_name, self.state.layout, self.chain.spec.to_dict(), self.rate,
                  self.held, self.title, self.bind.host, self.bind.port, self.token),
            name="deepafx-web", daemon=True,
        )  # fmt: skip
        self._proc.start()
        send.close()  # ours; the child has its own: EOF here once the child is gone
        deadline = time.monotonic() + timeout
        message = None
        while time.monotonic() < deadline:
            if receive.poll(0.05):
                try:
                    message = receive.recv()
                except EOFError:
                    message = None
                break
            if not self._proc.is_alive():
                break
        receive.close()
        if message is None or message[0] != "ready":
            self.stop()
            why = message[1] if message else "the web server did not start (see the message above)"
            raise WebError(why)
        self.port = int(message[1])
        if announce:
            print(f"deepafx-rt: control page: {self.url}", file=sys.stderr, flush=True)
            if self.generated_token:
                print("deepafx-rt: (a token was generated for this run: other machines can reach this "
                      "address; --web-token chooses one)", file=sys.stderr, flush=True)  # fmt: skip

    def stop(self) -> None:
        if self._proc is not None:
            self.state.header[shared.STOP] = 1
            stop_child(self._proc)
        self._proc = None
        if self.state.header is not None:
            self.state.header[shared.WEB_READY] = 0


__all__ = ["Bind", "WebError", "WebServer", "parse_bind"]
