"""`soundalike radio`: an endless live stream of new music from a checkpoint, to any browser.

One generator, any number of listeners. Three threads and an asyncio loop:

- the generator (`station.Station`) makes blocks of audio ahead of time into a bounded queue (`--ahead`
  seconds; it waits when the queue is full), so memory is the same after a day as after a minute;
- the on-air thread takes one block when it is due (real time), encodes it to MP3 (`mp3.Mp3Encoder`),
  writes it to the archive (`archive.Archive`, `--archive`) and hands the MP3 chunk to the loop;
- the loop (aiohttp) keeps the last `--lag` seconds of chunks (`Hub`) and serves them: every listener of
  `/stream` starts BURST_S behind the live edge (so a player starts at once) and then follows it, each in its
  own coroutine; one that reads too slowly falls off the ring and skips ahead to the live edge, one that
  stalls for `--write-timeout` seconds is dropped. Neither waits on the generator nor on another listener.
  `--icecast URL` is one more such reader, sending the chunks to an Icecast server as its source.

The generator's speed is measured before going on air. Slower than real time it is refused, unless
`--prebuffer SECONDS`: then the station fills that much audio before it airs and pauses to refill whenever it
runs dry, saying so on the page and in /status (never a silent stutter).

`--offline SECONDS --out DIR` generates the station's audio as fast as the machine allows into FLAC parts of
`--part-seconds` instead (no server): what `soundalike stats` judges to measure the keep-alive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import resource
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import UserError

BURST_S = 3.0  # seconds behind the live edge a new listener starts (a player starts at once; still a radio)
MEASURE_S = 4.0  # audio generated before going on air to measure the generator's speed
MIN_FACTOR = 1.1  # below this real-time factor the station does not go on air live
SEND_BUFFER = 16384  # bytes: a listener's socket send buffer (the kernel doubles it) and the transport's
ASSETS = {"/": ("radio.html", "text/html"), "/radio.css": ("radio.css", "text/css"),
          "/radio.js": ("radio.js", "text/javascript")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", help="checkpoint file or export folder; default: runs/<most recent run>/checkpoints/"
                                  "best.pt")
    p.add_argument("--runs", default="runs", help="runs folder searched for the default checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                       "only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--temperature", default="0.9:1.0",
                   help="LO:HI: the range of the temperature's slow random walk (default 0.9:1.0); one value: "
                        "that temperature")
    p.add_argument("--min-p", type=float, help="min-p sampling floor, as in render (default: the model's own, its "
                                               "config's train.sample_min_p)")
    p.add_argument("--seed", type=int, help="random seed (default: a new one, shown on the page)")
    p.add_argument("--level", type=float, metavar="DB", help="RMS level in dBFS, for a model with a level input, as in "
                                                             "render (default: its training data's level)")
    p.add_argument("--hold-level", nargs="?", const="data", metavar="DB|off",
                   help="hold the stream's RMS level at DB dBFS, as in render (default: the training data's level "
                        "where the model allows it; off: the model's own level)")
    p.add_argument("--keep-alive", choices=("on", "off"), default="on",
                   help="on (default): temperature walk and restarts from the training data when the last "
                        "minute is stuck, silent or noise; off: a plain render at the (low) temperature")
    p.add_argument("--data", help="dataset to restart from (default: the one the checkpoint was trained on)")
    p.add_argument("--archive", metavar="DIR", help="also write everything broadcast as FLAC files of an hour")
    p.add_argument("--icecast", metavar="URL", help="also send the stream to an Icecast 2.4+ server as its source, "
                                                    "e.g. http://source:PASSWORD@host:8000/radio.mp3")
    p.add_argument("--ahead", type=float, default=10.0, help="seconds the generator may run ahead (default 10)")
    p.add_argument("--prebuffer", type=float, default=0.0,
                   help="for a generator slower than real time: seconds to pre-render before airing, and to "
                        "refill whenever the buffer runs dry (default 0: refuse to air a slow generator)")
    p.add_argument("--max-listeners", type=int, default=1000, help="listeners served at once (default 1000)")
    p.add_argument("--lag", type=float, default=30.0,
                   help="seconds a listener may fall behind the live edge before it skips ahead to it (default 30)")
    p.add_argument("--write-timeout", type=float, default=10.0,
                   help="seconds a listener may block a write before it is dropped (default 10)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of the sampler (default 0: one per core)")
    p.add_argument("--weights", choices=("full", "bf16", "int8"), default="full", help="as in render")
    p.add_argument("--offline", type=float, metavar="SECONDS",
                   help="no server: generate SECONDS of the station's audio as fast as possible into --out")
    p.add_argument("--out", help="folder of --offline's FLAC parts")
    p.add_argument("--part-seconds", type=float, default=60.0, help="length of --offline's parts (default 60)")


# --- the command ------------------------------------------------------------------------------------------


def _positive(flag: str, value: float, zero: bool = False) -> None:
    if not (0 <= value if zero else 0 < value) or not math.isfinite(value):
        raise UserError(f"{flag} must be a {'non-negative' if zero else 'positive'} number, got {value}")


def parse_temperature(text: str) -> tuple[float, float]:
    """'0.95' or '0.9:1.05' -> (low, high)."""
    try:
        parts = [float(t) for t in str(text).split(":")]
    except ValueError:
        raise UserError(f"--temperature: expected a number or LO:HI, got {text!r}") from None
    if len(parts) not in (1, 2) or any(not math.isfinite(t) or t <= 0 for t in parts) or parts[0] > parts[-1]:
        raise UserError(f"--temperature: expected a positive number or LO:HI with 0 < LO <= HI, got {text!r}")
    return parts[0], parts[-1]


def check_args(args: argparse.Namespace) -> None:
    """Every flag checked before any work (one line naming it)."""
    from .atomic import check_folder

    low, high = parse_temperature(args.temperature)
    if args.min_p is not None and not 0 <= args.min_p < 1:
        raise UserError(f"--min-p must be at least 0 and below 1, got {args.min_p}")
    if args.level is not None:
        from .loudness import check_level

        check_level(args.level)
    from .loudness import parse_hold

    args.hold_level = parse_hold(args.hold_level)
    if args.seed is not None and not 0 <= args.seed < 2**62:
        raise UserError(f"--seed must be between 0 and 2**62 - 1, got {args.seed}")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {args.port}")
    _positive("--ahead", args.ahead)
    _positive("--prebuffer", args.prebuffer, zero=True)
    _positive("--write-timeout", args.write_timeout)
    _positive("--lag", args.lag)
    _positive("--part-seconds", args.part_seconds)
    if args.max_listeners < 1:
        raise UserError(f"--max-listeners must be at least 1, got {args.max_listeners}")
    if args.threads < 0:
        raise UserError(f"--threads must be 0 (one per core) or more, got {args.threads}")
    if args.data is not None and not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: no such folder")
    if args.offline is not None:
        _positive("--offline", args.offline)
        if not args.out:
            raise UserError("--offline needs --out DIR")
        out = check_folder(args.out, "--out")
        if out.is_dir() and any(out.iterdir()):
            raise UserError(f"--out {out}: not empty; choose a new folder")
    elif args.out:
        raise UserError("--out is for --offline; on air, --archive DIR keeps what is broadcast")
    if args.archive:
        check_folder(args.archive, "--archive")
    if args.icecast:
        icecast_target(args.icecast)
    args.temperature_range = (low, high)


def run(args: argparse.Namespace) -> int:
    from .device import pick_device
    from .run_folder import newest_best
    from .station import KeepAlive, Station, offline

    check_args(args)
    device = pick_device(args.device)
    ckpt = Path(args.ckpt) if args.ckpt else newest_best(args.runs)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    low, high = args.temperature_range
    station = Station(ckpt, KeepAlive(low, high, enabled=args.keep_alive == "on"), seed=seed, min_p=args.min_p,
                      data=args.data, threads=args.threads, weights=args.weights, device=device, level=args.level,
                      hold_level=args.hold_level)
    from .mp3 import RATES

    if args.offline is None and station.rate not in RATES:
        raise UserError(f"{ckpt}: sample rate {station.rate} Hz cannot be broadcast as MP3 (it carries "
                        f"{', '.join(map(str, RATES))} Hz)")
    print(f"station: {ckpt} (seed {seed}, temperature {low:g}" + (f" to {high:g}" if high > low else "")
          + (", keep-alive off" if args.keep_alive == "off" else f", keep-alive on, restarts from {station.data}"
             if station.data else ", keep-alive on, restarts from silence (the training data is not here)") + ")",
          file=sys.stderr)
    if args.offline is not None:
        old = signal.signal(signal.SIGTERM, _interrupt)
        try:
            report = offline(station, args.offline, Path(args.out), args.part_seconds)
        finally:
            signal.signal(signal.SIGTERM, old)
        from .atomic import write_json

        write_json(Path(args.out) / "station.json", report)
        print(f"{report['seconds']:.0f} s in {report['wall_s']:.0f} s ({report['realtime_factor']:.2f}x real time), "
              f"{report['stream']} restart(s), into {args.out}", file=sys.stderr)
        return 0
    radio = Radio(station, args)
    try:
        asyncio.run(radio.serve())
    finally:
        radio.stop()
    return 0


# --- the broadcast ----------------------------------------------------------------------------------------


class Hub:
    """The last chunks of the broadcast, numbered; listeners wait for the next one. Lives on the loop."""

    def __init__(self, keep: int):
        self.chunks: deque[bytes] = deque(maxlen=keep)
        self.next = 0  # the number the next chunk will get
        self.closed = False
        self._new = asyncio.Event()

    @property
    def first(self) -> int:
        return self.next - len(self.chunks)

    def publish(self, data: bytes) -> None:
        self.chunks.append(data)
        self.next += 1
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        new, self._new = self._new, asyncio.Event()
        new.set()

    async def wait(self, seq: int) -> bool:
        """Until chunk `seq` exists (True) or the broadcast ends (False)."""
        while seq >= self.next and not self.closed:
            await self._new.wait()
        return not self.closed

    def get(self, seq: int) -> bytes:
        return self.chunks[seq - self.first]


@dataclass
class Counters:
    listeners: int = 0
    peak: int = 0
    served: int = 0  # connections
    dropped: int = 0  # stalled past --write-timeout
    skipped: int = 0  # fell behind the ring and skipped ahead
    refused: int = 0  # over --max-listeners
    bytes: int = 0
    icecast: dict = field(default_factory=dict)


class Radio:
    """The station on air: generator and on-air threads, the hub, the HTTP server, the archive, Icecast."""

    def __init__(self, station, args: argparse.Namespace):
        from .mp3 import Mp3Encoder

        self.station, self.args = station, args
        self.rate = station.rate
        block_s = station.block / self.rate
        self.slow = False
        self.queue: queue.Queue = queue.Queue(maxsize=math.ceil(max(args.ahead, args.prebuffer, MEASURE_S) / block_s))
        self.stopping = threading.Event()
        self.encoder = Mp3Encoder(self.rate)
        self.archive = None
        if args.archive:
            from .archive import Archive

            self.archive = Archive(Path(args.archive), self.rate)
        self.counters = Counters()
        self.state = "starting"
        self.started_wall = time.time()
        self.aired = 0  # samples
        self.mp3_bytes = 0
        self.stalls = 0  # the queue was empty when a block was due
        self.pauses = 0  # a slow station stopped to refill its buffer
        self.measured_factor = math.nan
        self.threads: list[threading.Thread] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.hub: Hub | None = None
        self.error: str | None = None

    # threads ------------------------------------------------------------------------------------------------

    def _generate(self) -> None:
        import torch

        try:
            with torch.inference_mode():
                while not self.stopping.is_set():
                    block = self.station.next_block()
                    while not self.stopping.is_set():
                        try:
                            self.queue.put(block, timeout=0.2)
                            break
                        except queue.Full:
                            continue
        except BaseException as e:  # noqa: BLE001 (the station cannot go on; the loop is told and stops)
            self.error = f"the generator stopped: {type(e).__name__}: {e}"
            self.stopping.set()

    def _on_air(self) -> None:
        due = None  # monotonic time the next block is due
        refill = max(1, round(self.args.prebuffer * self.rate / self.station.block))
        try:
            while not self.stopping.is_set():
                if self.slow and self.queue.empty():
                    self.pauses += self.state != "buffering"
                    self.state = "buffering"
                    while self.queue.qsize() < min(refill, self.queue.maxsize) and not self.stopping.wait(0.2):
                        pass
                    due = None
                try:
                    block = self.queue.get(timeout=0.05)
                except queue.Empty:
                    if self.state == "on air":
                        self.stalls += 1
                        self.state = "late"
                    continue
                now = time.monotonic()
                if due is None or now - due > 1.0:
                    due = now  # (re)start the clock: the first block, or after a pause
                elif due > now and self.stopping.wait(due - now):
                    break
                self.state = "on air"
                data = self.encoder.encode(block)
                if self.archive is not None:
                    self.archive.write(block)
                self.aired += len(block)
                self.mp3_bytes += len(data)
                if data:
                    self.loop.call_soon_threadsafe(self.hub.publish, data)
                due += len(block) / self.rate
        except BaseException as e:  # noqa: BLE001
            self.error = f"the broadcast stopped: {type(e).__name__}: {e}"
            self.stopping.set()

    def _start_thread(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def measure(self) -> None:
        """Generate MEASURE_S of audio (into the queue) and decide whether the station can air live."""
        import torch

        with torch.inference_mode():
            while self.station.generated < MEASURE_S * self.rate:
                self.queue.put(self.station.next_block())
        self.measured_factor = self.station.realtime_factor
        f = self.measured_factor
        if f >= MIN_FACTOR:
            print(f"generator: {f:.2f}x real time", file=sys.stderr)
            return
        if not self.args.prebuffer:
            raise UserError(f"the generator runs at {f:.2f}x real time here, too slow to broadcast live (at least "
                            f"{MIN_FACTOR}x is needed); pass --prebuffer SECONDS to play from a pre-rendered buffer "
                            "that refills when it runs dry, or use --weights int8 or a faster machine")
        self.slow = True
        lasts = self.args.prebuffer / max(1e-9, 1 - f)
        print(f"generator: {f:.2f}x real time, slower than real time: airing from a pre-rendered buffer of "
              f"{self.args.prebuffer:g} s, which lasts about {lasts:.0f} s before the station pauses to refill it",
              file=sys.stderr)

    def stop(self) -> None:
        """Stop the threads and close the archive validly (Ctrl-C, SIGTERM, the end of serve)."""
        self.stopping.set()
        for t in self.threads:
            t.join()
        self.threads = []
        if self.archive is not None:
            self.archive.close()
            self.archive = None

    # status ------------------------------------------------------------------------------------------------

    def status(self) -> dict:
        c, s = self.counters, self.station
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "state": self.state,
            "uptime_s": round(time.time() - self.started_wall, 1),
            "on_air_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_wall)),
            "aired_s": round(self.aired / self.rate, 1),
            "listeners": c.listeners, "listeners_peak": c.peak, "connections": c.served,
            "dropped": c.dropped, "skipped_ahead": c.skipped, "refused": c.refused, "bytes_sent": c.bytes,
            "generator": {"realtime_factor": round(s.realtime_factor, 3),
                          "measured_at_start": round(self.measured_factor, 3),
                          "slower_than_real_time": self.slow, "prebuffer_s": self.args.prebuffer},
            "buffer_s": round(self.queue.qsize() * s.block / self.rate, 1),
            "stalls": self.stalls, "pauses_to_refill": self.pauses,
            "stream": {"format": "audio/mpeg", "bitrate": self.encoder.bitrate, "sample_rate": self.rate,
                       "bytes_per_audio_s": round(self.mp3_bytes / max(1e-9, self.aired / self.rate), 1)},
            "playing": s.describe(),
            "archive": {"folder": self.args.archive,
                        "writing": str(self.archive.current) if self.archive and self.archive.current else None},
            "icecast": c.icecast or None,
            "process": {"cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "rss_mb": round(_rss_mb(), 1),
                        "max_rss_mb": round(usage.ru_maxrss / 1024, 1)},
        }

    # the server --------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        from aiohttp import web

        self.loop = asyncio.get_running_loop()
        self.hub = Hub(max(2, math.ceil(self.args.lag * self.rate / self.station.block)))
        await self.loop.run_in_executor(None, self.measure)
        if self.slow:
            self.state = "buffering"
            refill = math.ceil(self.args.prebuffer * self.rate / self.station.block)
            self._start_thread(self._generate, "generator")
            while self.queue.qsize() < min(refill, self.queue.maxsize) and not self.stopping.is_set():
                await asyncio.sleep(0.2)
        else:
            self._start_thread(self._generate, "generator")
        self._start_thread(self._on_air, "on-air")

        app = web.Application()
        for route, (name, kind) in ASSETS.items():
            app.router.add_get(route, self._asset(name, kind))
        app.router.add_get("/status", self._status)
        app.router.add_get("/stream", self._stream)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.args.host, self.args.port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise UserError(f"--host {self.args.host} --port {self.args.port}: cannot listen there ({e.strerror})") \
                from None
        port = runner.addresses[0][1]
        self.started_wall = time.time()  # on air from here
        host = self.args.host if ":" not in self.args.host else f"[{self.args.host}]"
        print(f"on air: http://{host}:{port}/  (stream: /stream, status: /status)", file=sys.stderr, flush=True)

        done = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, done.set)
        icecast = asyncio.create_task(self._icecast()) if self.args.icecast else None
        try:
            while not done.is_set() and not self.stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.5)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.remove_signal_handler(sig)
            self.hub.close()
            if icecast is not None:
                icecast.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await icecast
            await self.loop.run_in_executor(None, self.stop)
            await runner.cleanup()
        if self.error:
            raise UserError(self.error)
        print(f"off air after {self.aired / self.rate:.0f} s", file=sys.stderr)

    def _asset(self, name: str, kind: str):
        from aiohttp import web

        body = (resources.files("soundalike") / "assets" / name).read_bytes()

        async def handler(request):
            return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-cache"})
        return handler

    async def _status(self, request):
        from aiohttp import web

        return web.json_response(self.status(), dumps=lambda o: json.dumps(_finite(o)))

    async def _stream(self, request):
        from aiohttp import web

        c = self.counters
        if c.listeners >= self.args.max_listeners:
            c.refused += 1
            raise web.HTTPServiceUnavailable(text="the station has as many listeners as it serves\n")
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg", "Cache-Control": "no-cache, no-store",
                                           "icy-name": "soundalike radio", "X-Content-Type-Options": "nosniff"})
        _small_buffers(request.transport)
        await resp.prepare(request)
        c.listeners += 1
        c.served += 1
        c.peak = max(c.peak, c.listeners)
        try:
            async for data in self._chunks():
                await asyncio.wait_for(resp.write(data), self.args.write_timeout)
                c.bytes += len(data)
        except asyncio.TimeoutError:
            c.dropped += 1
            if request.transport is not None:
                request.transport.abort()
        except (ConnectionError, RuntimeError):
            pass  # the listener went away
        finally:
            c.listeners -= 1
        return resp

    async def _chunks(self):
        """The broadcast's MP3 chunks from BURST_S behind the live edge on, as the reader takes them; a reader
        that fell off the ring skips ahead."""
        hub, burst = self.hub, max(1, round(BURST_S * self.rate / self.station.block))
        seq = max(hub.first, hub.next - burst)
        while await hub.wait(seq):
            if seq < hub.first:
                seq = max(hub.first, hub.next - burst)
                self.counters.skipped += 1
            yield hub.get(seq)
            seq += 1

    async def _icecast(self) -> None:
        """Be the source of an Icecast mount: one long PUT of the stream, reconnecting after a failure."""
        import aiohttp

        url, auth = icecast_target(self.args.icecast)
        info = self.counters.icecast
        info.update(url=str(url), connected=False, connections=0, bytes=0, error=None)
        stream_done = asyncio.Event()

        async def body():
            try:
                async for data in self._chunks():
                    info["bytes"] += len(data)
                    yield data
            finally:
                stream_done.set()

        headers = {"Authorization": auth, "Content-Type": "audio/mpeg", "Ice-Name": "soundalike radio",
                   "Ice-Description": f"{self.station.checkpoint}", "Ice-Public": "0",
                   # Icecast 2.4 reads a source's body raw and does not decode chunked transfer encoding, which
                   # aiohttp uses for a body of unknown length: a declared length (~1 TB, years of audio)
                   # keeps the body as it is.
                   "Content-Length": str(2**40)}
        while not self.hub.closed:
            stream_done.clear()
            try:
                async with aiohttp.ClientSession() as session, \
                        session.put(url, data=body(), headers=headers) as resp:
                    if resp.status != 200:
                        raise ConnectionError(f"HTTP {resp.status} {resp.reason}")
                    info.update(connected=True, error=None)
                    info["connections"] += 1
                    await stream_done.wait()
            except (aiohttp.ClientError, ConnectionError, OSError, asyncio.TimeoutError) as e:
                info["error"] = f"{type(e).__name__}: {e}"
            info["connected"] = False
            await asyncio.sleep(2.0)


def icecast_target(text: str):
    """--icecast http://user:password@host:port/mount -> (URL without the credentials, Basic auth header)."""
    import aiohttp
    from yarl import URL

    try:
        url = URL(text)
    except (ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host or url.path in ("", "/"):
        raise UserError(f"--icecast {text!r}: expected http://source:PASSWORD@HOST:PORT/MOUNT")
    if not url.password:
        raise UserError(f"--icecast {url.with_password(None)}: no source password in the URL "
                        "(http://source:PASSWORD@HOST:PORT/MOUNT)")
    return url.with_user(None), aiohttp.encode_basic_auth(url.user or "source", url.password)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _small_buffers(transport) -> None:
    """A listener's bytes in flight bounded to a few seconds of audio (socket and transport buffers): memory
    per listener stays small, and one who stops reading blocks a write, and is dropped, within seconds."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    if transport is not None:
        transport.set_write_buffer_limits(high=SEND_BUFFER)


def _finite(o):
    """JSON has no NaN: a figure not measured yet is null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


def _rss_mb() -> float:
    """Resident memory now, MiB (Linux /proc; the peak from getrusage elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
