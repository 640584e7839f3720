"""`soundalike radio`: the station in a real process on a free loopback port, listened to by plain HTTP clients,
headless Chromium and a real Icecast server; the keep-alive, the archive and the MP3 framing on their own."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf
import torch

from soundalike import cli
from soundalike.archive import Archive, numbered
from soundalike.checkpoint import model_payload, save_checkpoint
from soundalike.config import Config, DataConfig
from soundalike.models import from_config
from soundalike.models.samplernn import SampleRNNConfig
from soundalike.mp3 import Mp3Encoder, frames
from soundalike.quantize import Quantizer
from soundalike.slicing import make_params, slice_dataset
from soundalike.station import KeepAlive, Station

from .conftest import plucks
from .test_gallery import CHROMIUM_FLAGS, _chromium

RATE = 16000
BITRATE = 64000


def tiny_checkpoint(path: Path, rate: int = RATE, data: str = "nowhere") -> Path:
    """A tiny random SampleRNN (16 kHz): 16 levels and a top frame of 256 samples, so that it runs many times
    faster than real time even on a busy machine."""
    cfg = Config(name="tiny", data=DataConfig(path=data, q_levels=16),
                 model=SampleRNNConfig(frame_sizes=[16, 16], dim=16, emb_size=8))
    torch.manual_seed(0)
    save_checkpoint(path, model_payload(from_config(cfg), Quantizer("mulaw", 16), rate, cfg.to_dict()))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("radio")
    (root / "raw").mkdir()
    sf.write(root / "raw" / "a.wav", plucks(8.0, RATE, 3), RATE)
    slice_dataset([root / "raw"], root / "data", make_params(sample_rate=RATE, chunk_seconds=1.0,
                                                             overlap_seconds=0.0, region_seconds=1.0),
                  progress=False)
    tiny_checkpoint(root / "tiny.pt", data=str(root / "data"))
    return root


class Station_:
    """`soundalike radio` in a child process; `url` once it is on air."""

    def __init__(self, ckpt: Path, *flags: str):
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        self.proc = subprocess.Popen([sys.executable, "-m", "soundalike", "radio", "--ckpt", str(ckpt), "--port", "0",
                                      "--threads", "1", "--seed", "5", *flags],
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.log: list[str] = []
        for line in self.proc.stderr:
            self.log.append(line)
            if m := re.search(r"on air: (http://127\.0\.0\.1:\d+)/", line):
                self.url = m.group(1)
                break
        else:
            raise AssertionError("the station did not go on air:\n" + "".join(self.log))
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

    def status(self) -> dict:
        return asyncio.run(_get_json(self.url + "/status"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


async def _get_json(url: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        return await r.json()


@pytest.fixture(scope="module")
def station(project):
    s = Station_(project / "tiny.pt", "--write-timeout", "1", "--lag", "4", "--archive", str(project / "archive"))
    yield s
    assert s.stop() == 0, "".join(s.log)


async def _read(url: str, seconds: float, start_after: float = 0.0) -> tuple[bytes, list[tuple[float, int]]]:
    """/stream for `seconds` (after waiting `start_after`): the bytes and (time, bytes so far) of each read."""
    await asyncio.sleep(start_after)
    data, reads = bytearray(), []
    async with aiohttp.ClientSession() as s, s.get(url + "/stream") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "audio/mpeg"
        t0 = time.monotonic()
        async for chunk in r.content.iter_any():
            data += chunk
            reads.append((time.monotonic() - t0, len(data)))
            if time.monotonic() - t0 >= seconds:
                break
    return bytes(data), reads


def test_status_and_page(station):
    deadline = time.monotonic() + 10
    while (s := station.status())["aired_s"] == 0:  # the first block goes on air just after the server starts
        assert time.monotonic() < deadline, s
        time.sleep(0.1)
    assert s["state"] == "on air" and s["generator"]["measured_at_start"] >= 1.1
    assert s["stream"] == {**s["stream"], "format": "audio/mpeg", "bitrate": BITRATE, "sample_rate": RATE}
    assert s["playing"]["seed"] == 5 and 0.9 <= s["playing"]["temperature"] <= 1.0
    assert s["playing"]["keep_alive"]["restart_from"] and s["archive"]["writing"].endswith(".wav")

    async def pages():
        async with aiohttp.ClientSession() as session:
            out = {}
            for path in ("/", "/radio.js", "/radio.css", "/nowhere", "/status?x=%ff"):
                async with session.get(station.url + path) as r:
                    out[path] = (r.status, r.headers.get("Content-Type", ""), await r.read())
            async with session.post(station.url + "/stream") as r:
                out["POST"] = (r.status, "", b"")
            return out

    out = asyncio.run(pages())
    assert out["/"][0] == 200 and b'<audio id="radio"' in out["/"][2] and out["/"][1] == "text/html"
    assert out["/radio.js"][0] == out["/radio.css"][0] == 200 and out["/status?x=%ff"][0] == 200
    assert out["/nowhere"][0] == 404 and out["POST"][0] == 405


def test_bad_request_gets_an_http_error_and_the_station_goes_on(station):
    host, port = station.url.removeprefix("http://").split(":")
    for garbage in (b"NOT HTTP AT ALL\r\n\r\n", b"GET /stream HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as c:
            c.sendall(garbage)
            reply = c.recv(200)
        assert re.match(rb"HTTP/1\.[01] 4\d\d", reply), reply
    assert station.status()["state"] == "on air"


def test_every_listener_hears_the_same_broadcast_from_the_live_edge(station):
    async def two():
        return await asyncio.gather(_read(station.url, 9.0), _read(station.url, 4.0, start_after=5.0))

    (early, reads), (late, _) = asyncio.run(two())
    # The late listener's audio is the early one's, from ~3 s behind the live edge when it joined: the same
    # broadcast, not a private render from the start.
    at = early.find(late[:4000])
    assert at > 0, "the late listener does not hear the broadcast the early one hears"
    heard_before_join = next(t for t, n in reads if n > at)
    assert 1.0 <= heard_before_join <= 5.0, heard_before_join
    found, rest = frames(late)
    assert len(found) > 50 and len(rest) < 600  # whole MP3 frames from the first byte
    # After the burst, bytes arrive at the real-time rate and without gaps.
    times = [(t, n) for t, n in reads if t >= 4.0]
    rate = (times[-1][1] - times[0][1]) / (times[-1][0] - times[0][0])
    assert abs(rate / (BITRATE / 8) - 1) < 0.15, rate
    assert max(b[0] - a[0] for a, b in itertools.pairwise(times)) < 1.5


def test_stalled_and_slow_listeners_never_block_the_others(station):
    host, port = station.url.removeprefix("http://").split(":")
    before = station.status()

    def raw_listener(read_per_s: int) -> socket.socket:
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect((host, int(port)))
        c.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        return c

    stalled, slow = raw_listener(0), raw_listener(1000)
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.5):
            try:
                slow.recv(500)
            except OSError:
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        _, reads = asyncio.run(_read(station.url, 20.0))
    finally:
        stop.set()
        t.join()
        stalled.close()
        slow.close()
    after = station.status()
    times = [(t, n) for t, n in reads if t >= 3.0]
    rate = (times[-1][1] - times[0][1]) / (times[-1][0] - times[0][0])
    assert abs(rate / (BITRATE / 8) - 1) < 0.15, rate
    assert max(b[0] - a[0] for a, b in itertools.pairwise(times)) < 1.5
    assert after["dropped"] > before["dropped"], "the stalled listener was not dropped"
    gone = after["dropped"] + after["skipped_ahead"] - before["dropped"] - before["skipped_ahead"]
    assert gone >= 2, "the slow listener was neither dropped nor skipped ahead"
    assert after["stalls"] == 0 and after["state"] == "on air"


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary")
def test_page_plays_in_headless_chromium(station, tmp_path):
    profile = tmp_path / "profile"
    chrome = subprocess.Popen([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               "--remote-debugging-port=0", station.url + "/?autoplay=1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "chromium did not open its debugging port"
            time.sleep(0.2)
        samples = asyncio.run(_watch_player(int(port_file.read_text().split()[0])))
    finally:
        chrome.terminate()
        chrome.wait(timeout=30)
    log = samples[-1]["log"]
    playing = [e for e in log if e["type"] == "playing"]
    assert playing, f"the audio element never played: {log}"
    start = playing[0]
    after = [e for e in log if e["wall"] > start["wall"] and e["type"] in ("waiting", "stalled", "error", "ended")]
    assert not after, f"events after playback started: {after}"
    t0 = next(s for s in samples if s["wall"] >= start["wall"])
    t1 = next((s for s in samples if s["currentTime"] - t0["currentTime"] >= 5.0), None)
    assert t1 is not None and t1["wall"] - t0["wall"] <= 10.0, samples[-1]
    assert not samples[-1]["paused"]


async def _watch_player(port: int) -> list[dict]:
    """Sample the page's audio element through the DevTools protocol for up to 25 s."""
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            async with s.get(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [p for p in await r.json() if p["type"] == "page" and "/?autoplay" in p["url"]]
            if pages:
                break
            await asyncio.sleep(0.2)
        samples, started = [], None
        async with s.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            expr = ("JSON.stringify({currentTime: radio.currentTime, paused: radio.paused, "
                    "wall: performance.now() / 1000, log: window.radioLog || []})")
            for i in range(125):
                await ws.send_json({"id": i, "method": "Runtime.evaluate", "params": {"expression": expr}})
                while (msg := await ws.receive_json()).get("id") != i:
                    pass
                value = msg["result"].get("result", {}).get("value")
                if value:
                    samples.append(json.loads(value))
                    if samples[-1]["currentTime"] > 0 and started is None:
                        started = samples[-1]["wall"]
                    if started is not None and samples[-1]["wall"] - started > 12:
                        break
                await asyncio.sleep(0.2)
        return samples


def test_sigterm_closes_the_archive_validly(project, tmp_path):
    s = Station_(project / "tiny.pt", "--archive", str(tmp_path / "archive"))
    asyncio.run(_read(s.url, 3.0))
    aired = s.status()["aired_s"]
    assert s.stop() == 0, "".join(s.log)
    files = list((tmp_path / "archive").iterdir())
    assert len(files) == 1 and files[0].suffix == ".flac", files
    audio, rate = sf.read(files[0])
    assert rate == RATE and aired <= len(audio) / RATE <= aired + 10


def test_archive_files_fill_in_turn_and_a_killed_one_is_recovered(tmp_path):
    rng = np.random.default_rng(0)
    a = Archive(tmp_path, RATE, file_seconds=1.0, name=numbered)
    for _ in range(5):
        a.write(0.1 * rng.standard_normal(6000).astype(np.float32))
    a._encoder.shutdown()  # part-00000 is encoded
    # As if killed here: part-00001.wav is being written (valid up to its last block) and never closed.
    assert a.current.name == "part-00001.wav" and sf.info(a.current).frames == 30000 - RATE
    Archive(tmp_path, RATE, file_seconds=1.0, name=numbered).close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["part-00000.flac", "part-00001.flac"], names
    assert [sf.info(tmp_path / n).frames for n in names] == [RATE, 30000 - RATE]


def test_mp3_encoder_gives_whole_frames_at_a_constant_rate(tmp_path):
    enc, out = Mp3Encoder(RATE), b""
    for _ in range(10):
        chunk = enc.encode(0.2 * np.sin(np.arange(8000) * 0.05, dtype=np.float32))
        found, rest = frames(chunk)
        assert rest == b"" and all(len(f) in (287, 288) for f in found)  # 72 * 64000 / 16000 (+ padding)
        out += chunk
    assert enc.bitrate == BITRATE
    (tmp_path / "a.mp3").write_bytes(out)
    assert abs(sf.info(tmp_path / "a.mp3").duration - 5.0) < 0.2


def test_keep_alive_restarts_from_the_data_with_a_crossfade_and_is_reproducible(project):
    keep = KeepAlive(0.9, 1.0, window_s=1.0, check_s=0.5, fade_s=0.1)
    a, b = (Station(project / "tiny.pt", keep, seed=3, block_seconds=0.25, threads=1) for _ in range(2))
    blocks = [a.next_block() for _ in range(16)]
    assert all(len(x) == a.block and np.isfinite(x).all() and np.abs(x).max() <= 1 for x in blocks)
    assert a.stream >= 1 and a.verdicts.get("noise"), a.describe()  # a random model's output is noise
    assert any("restarted from 2 s of" in e["what"] for e in a.events)
    assert 0.9 <= a.temperature <= 1.0
    assert np.array_equal(np.concatenate(blocks), np.concatenate([b.next_block() for _ in range(16)]))
    plain = Station(project / "tiny.pt", KeepAlive(0.95, 0.95, enabled=False), seed=3, block_seconds=0.25, threads=1)
    for _ in range(16):
        plain.next_block()
    assert plain.stream == 0 and plain.temperature == 0.95 and not plain.verdicts


def test_hold_level_holds_every_stream_restarts_included(project):
    """The tiny random model plays loud noise; held at -14 dBFS the station comes down to it, a restarted stream
    is held too (a hold of its own, from the old one's state), and /status says so."""
    keep = KeepAlive(1.0, 1.0, window_s=1.0, check_s=0.5, fade_s=0.1)
    free, held = (Station(project / "tiny.pt", keep, seed=3, block_seconds=0.25, threads=1, hold_level=h)
                  for h in (None, -14.0))
    a, b = (np.concatenate([s.next_block() for _ in range(32)]) for s in (free, held))

    def db(x: np.ndarray) -> float:
        return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))

    assert held.stream >= 1 and held.describe()["hold_level"] == -14.0 and free.describe()["hold_level"] is None
    assert db(a[RATE * 4:]) > -18 and abs(db(b[RATE * 4:]) + 14) < 2, (db(a[RATE * 4:]), db(b[RATE * 4:]))
    assert held.hold.strength[0] < 0
    # a restart takes the old hold's tilt, not the level it read (that may be the dead air being replaced)
    held.hold.update(np.zeros((1, held.hold.due())))
    new = held._new_stream(prime=True)[2]
    assert np.array_equal(new.integral, held.hold.integral) and np.array_equal(new.strength, held.hold.integral)
    assert new.due() == new.block
    assert new.energy[0] == pytest.approx(10 ** -1.4) != held.hold.energy[0]


def test_dead_air_restarts_the_stream_at_once(project, monkeypatch):
    """A stream fallen silent is restarted after dead_air_s, long before the watchdog's window judges it."""
    keep = KeepAlive(0.9, 1.0, window_s=60.0, check_s=20.0, fade_s=0.1, dead_air_s=1.0)
    station = Station(project / "tiny.pt", keep, seed=3, block_seconds=0.25, threads=1)
    first, real = station.sampler, Station._levels

    def silenced(self, sampler, state, hold, n):  # the first stream falls silent (below -60 dBFS), the next not
        audio, state = real(self, sampler, state, hold, n)
        return (audio * 1e-4 if sampler is first else audio), state

    monkeypatch.setattr(Station, "_levels", silenced)
    blocks = [station.next_block() for _ in range(6)]
    assert station.stream == 1 and station.dead_air_restarts == 1 and not station.verdicts
    assert station.events[0]["what"].startswith("1.0 s of dead air") and station.events[0]["at_s"] == 1.0
    assert "restarted from 2 s of" in station.events[1]["what"]
    assert max(np.abs(b).max() for b in blocks[:4]) < 1e-3 < np.abs(blocks[4]).max()
    assert station.describe()["keep_alive"]["dead_air_restarts"] == 1


def test_offline_writes_the_stations_audio_in_parts(project, tmp_path):
    out = tmp_path / "offline"
    assert cli.main(["radio", "--ckpt", str(project / "tiny.pt"), "--offline", "2.5", "--out", str(out),
                     "--part-seconds", "1", "--seed", "1", "--threads", "1"]) == 0
    parts = sorted(out.glob("part-*.flac"))
    assert [sf.info(p).frames for p in parts] == [RATE, RATE, RATE // 2]
    report = json.loads((out / "station.json").read_text())
    assert report["seconds"] == 2.5 and report["seed"] == 1


def test_a_slow_generator_is_refused_or_buffered_and_says_so(project):
    from soundalike.errors import UserError
    from soundalike.radio import Radio, add_arguments, check_args

    def args(*flags):
        p = argparse.ArgumentParser()
        add_arguments(p)
        parsed = p.parse_args(list(flags))
        check_args(parsed)
        return parsed

    class Slow:
        rate, block, generated, checkpoint = RATE, RATE // 2, 0, "slow"
        realtime_factor = 0.5

        def describe(self):
            return {}

        def next_block(self):
            self.generated += self.block
            return np.zeros(self.block, np.float32)

    with pytest.raises(UserError, match=r"0\.50x real time.*--prebuffer"):
        Radio(Slow(), args()).measure()
    radio = Radio(Slow(), args("--prebuffer", "20"))
    radio.measure()
    assert radio.slow and radio.status()["generator"]["slower_than_real_time"]


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "0"], "--temperature"),
    (["--temperature", "1.0:0.5"], "--temperature"),
    (["--temperature", "warm"], "--temperature"),
    (["--port", "70000"], "--port"),
    (["--ahead", "nan"], "--ahead"),
    (["--icecast", "http://127.0.0.1:8000/radio.mp3"], "no source password"),
    (["--icecast", "ftp://x"], "--icecast"),
    (["--offline", "5"], "--offline needs --out"),
    (["--out", "x"], "--out is for --offline"),
    (["--data", "/nonexistent/dataset"], "--data"),
    (["--ckpt", "/nonexistent.pt"], "checkpoint not found"),
])
def test_bad_flags_are_one_line(project, capsys, flags, message):
    argv = ["radio", *(["--ckpt", str(project / "tiny.pt")] if "--ckpt" not in flags else []), *flags]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_rate_mp3_cannot_carry_is_refused(tmp_path, capsys):
    assert cli.main(["radio", "--ckpt", str(tiny_checkpoint(tmp_path / "odd.pt", rate=10000))]) == 2
    assert "10000 Hz cannot be broadcast as MP3" in capsys.readouterr().err


ICECAST = shutil.which("icecast2") or shutil.which("icecast")


@pytest.mark.skipif(ICECAST is None, reason="no icecast2 (make test installs it where it can)")
def test_icecast_relays_the_station(project, tmp_path):
    port = _free_port()
    folder = tmp_path / "icecast"
    folder.mkdir()
    security = "<changeowner><user>nobody</user><group>nogroup</group></changeowner>" if os.getuid() == 0 else ""
    (folder / "icecast.xml").write_text(f"""<icecast>
  <limits><clients>10</clients><sources>2</sources><source-timeout>10</source-timeout>
    <burst-size>65536</burst-size></limits>
  <authentication><source-password>hackme</source-password><admin-user>admin</admin-user>
    <admin-password>hackme</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <paths><basedir>{folder}</basedir><logdir>{folder}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><accesslog>-</accesslog><errorlog>-</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot>{security}</security>
</icecast>
""")
    # Icecast refuses to run as root unless told whom to become (changeowner); it then cannot open files in
    # pytest's private folders, so it logs to its stderr, which the test keeps.
    log = folder / "icecast.log"
    ice = subprocess.Popen([ICECAST, "-c", str(folder / "icecast.xml")], stdout=subprocess.DEVNULL,
                           stderr=log.open("w"))
    station = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert ice.poll() is None and time.monotonic() < deadline, f"icecast: {log.read_text()}"
                time.sleep(0.1)
        station = Station_(project / "tiny.pt", "--icecast", f"http://source:hackme@127.0.0.1:{port}/radio.mp3")
        deadline = time.monotonic() + 30
        while not (station.status()["icecast"] or {}).get("connected"):
            assert time.monotonic() < deadline, (station.status()["icecast"], log.read_text())
            time.sleep(0.3)

        async def listen():
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/radio.mp3") as r:
                assert r.status == 200 and r.headers["Content-Type"] == "audio/mpeg"
                data = b""
                async for chunk in r.content.iter_any():
                    data += chunk
                    if len(data) >= 5 * BITRATE // 8:
                        return data

        async def both():
            return await asyncio.gather(asyncio.wait_for(listen(), 30), _read(station.url, 8.0))

        data, (own, _) = asyncio.run(both())
        found, _ = frames(data[data.find(b"\xff\xf3"):])
        assert len(found) > 100  # whole frames, no chunked-encoding bytes between them
        assert own.find(data[-1500:-500]) >= 0, "Icecast's listener does not hear the station's broadcast"
        status = station.status()["icecast"]
        assert status["connected"] and status["bytes"] > 0 and "hackme" not in json.dumps(status)
    finally:
        if station is not None:
            assert station.stop() == 0, "".join(station.log)
        ice.terminate()
        ice.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
