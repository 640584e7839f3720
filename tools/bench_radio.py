"""Load test and soak of `soundalike radio`, on loopback only, bounded in listeners and time; prints JSON.

    python tools/bench_radio.py --ckpt CKPT --listeners 1,10,100,500 --seconds 60
    python tools/bench_radio.py --ckpt CKPT --soak 1800 --archive /tmp/soak-archive

Starts the station as a child process on 127.0.0.1 (a free port). Load test: for each N, N listeners read
/stream together for --seconds; for each the bytes per second over the window after the first BURST seconds
(the station sends a burst on joining), against the station's own MP3 bytes per second of audio (/status), and
its longest gap between two reads (a stall would show as a gap of seconds); the station's real-time factor
and its CPU and memory (from /proc) over the window. Soak: listeners join and leave at random (2 to 20 at
once, each for 10 s to 5 min) for --soak seconds; memory every minute; then SIGTERM, and every archive file
is checked whole (FLAC, every frame decoded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
BURST = 5.0  # seconds left out of each listener's rate: the burst on joining
MAX_LISTENERS, MAX_SECONDS = 1000, 4 * 3600


def start_station(ckpt: str, archive: str | None, extra: list[str]) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "soundalike", "radio", "--ckpt", ckpt, "--host", "127.0.0.1", "--port", "0",
           "--max-listeners", str(MAX_LISTENERS + 10), *extra]
    if archive:
        cmd += ["--archive", archive]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if m := re.search(r"on air: (http://127\.0\.0\.1:\d+)/", line):
            threading_drain(proc)
            return proc, m.group(1)
    raise SystemExit("the station did not start:\n" + "".join(lines))


def threading_drain(proc: subprocess.Popen) -> None:
    """Keep reading the station's stderr so that it never blocks on a full pipe."""
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MiB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return cpu, rss / 1024


async def listen(session: aiohttp.ClientSession, url: str, seconds: float) -> dict:
    """Read /stream for `seconds`: bytes after the burst, the rate, the longest gap between reads."""
    started = time.monotonic()
    total = after = 0
    last = started
    gap = 0.0
    try:
        async with asyncio.timeout(seconds), session.get(url + "/stream") as r:
            if r.status != 200:
                return {"error": f"HTTP {r.status}"}
            async for chunk in r.content.iter_any():
                now = time.monotonic()
                if now - started > BURST:
                    gap = max(gap, now - last)
                    after += len(chunk)
                last = now
                total += len(chunk)
    except TimeoutError:
        gap = max(gap, time.monotonic() - last)  # the end of the window: a silence at the end counts too
    except aiohttp.ClientError as e:
        return {"error": f"{type(e).__name__}: {e}"}
    span = max(1e-9, min(time.monotonic(), started + seconds) - started - BURST)
    return {"bytes": total, "rate": after / span, "max_gap_s": gap}


async def status(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/status") as r:
        return await r.json()


async def load(url: str, pid: int, counts: list[int], seconds: float) -> list[dict]:
    rows = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        for n in counts:
            s0, (cpu0, _) = await status(session, url), proc_usage(pid)
            t0 = time.monotonic()
            results = await asyncio.gather(*(listen(session, url, seconds) for _ in range(n)))
            wall = time.monotonic() - t0
            s1, (cpu1, rss) = await status(session, url), proc_usage(pid)
            ok = [r for r in results if "error" not in r]
            real = s1["stream"]["bitrate"] / 8  # constant bit rate: bytes per second of audio
            rates = sorted(r["rate"] / real for r in ok)
            gen = (s1["aired_s"] - s0["aired_s"])
            rows.append({
                "listeners": n, "seconds": seconds, "failed": n - len(ok),
                "rate_vs_realtime": {"min": round(rates[0], 4), "median": round(rates[len(rates) // 2], 4),
                                     "max": round(rates[-1], 4)} if rates else None,
                "max_gap_s": round(max(r["max_gap_s"] for r in ok), 2) if ok else None,
                "aired_per_wall_s": round(gen / wall, 3),
                "generator_realtime_factor": s1["generator"]["realtime_factor"],
                "stalls": s1["stalls"] - s0["stalls"], "dropped": s1["dropped"] - s0["dropped"],
                "skipped_ahead": s1["skipped_ahead"] - s0["skipped_ahead"],
                "server_cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1), "server_rss_mb": round(rss, 1),
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


async def soak(url: str, pid: int, seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    memory, results, tasks = [], [], set()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        t0 = time.monotonic()
        s0 = await status(session, url)
        next_sample = t0
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            if now >= next_sample:
                cpu, rss = proc_usage(pid)
                memory.append({"t_s": round(now - t0), "rss_mb": round(rss, 1), "cpu_s": round(cpu, 1)})
                next_sample += 60
            want = rng.randint(2, 20)
            while len(tasks) < want:
                stay = min(rng.uniform(10, 300), seconds - (time.monotonic() - t0))
                if stay < BURST + 5:
                    break
                task = asyncio.create_task(listen(session, url, stay))
                tasks.add(task)
                task.add_done_callback(lambda t: (tasks.discard(t), results.append(t.result())))
            await asyncio.sleep(rng.uniform(1, 10))
        if tasks:
            await asyncio.gather(*tasks)
        s1 = await status(session, url)
    ok = [r for r in results if "error" not in r]
    real = s1["stream"]["bitrate"] / 8  # constant bit rate: bytes per second of audio
    rates = sorted(r["rate"] / real for r in ok)
    return {"seconds": seconds, "listeners_served": len(results), "failed": len(results) - len(ok),
            "rate_vs_realtime": {"min": round(rates[0], 4), "median": round(rates[len(rates) // 2], 4),
                                 "max": round(rates[-1], 4)} if rates else None,
            "max_gap_s": round(max(r["max_gap_s"] for r in ok), 2) if ok else None,
            "stalls": s1["stalls"] - s0["stalls"], "pauses_to_refill": s1.get("pauses_to_refill"),
            "dropped": s1["dropped"], "state_at_end": s1["state"],
            "generator_realtime_factor": s1["generator"]["realtime_factor"],
            "memory_start_mb": memory[0]["rss_mb"], "memory_end_mb": memory[-1]["rss_mb"], "memory": memory}


def check_archive(folder: Path) -> list[dict]:
    """Every file of the archive decoded to its end."""
    import soundfile as sf

    files = []
    for path in sorted(folder.iterdir()):
        try:
            with sf.SoundFile(path) as f:
                n = sum(len(b) for b in f.blocks(65536))
                files.append({"file": path.name, "format": f.format, "seconds": round(n / f.samplerate, 1),
                              "valid": n == f.frames})
        except (sf.LibsndfileError, RuntimeError) as e:
            files.append({"file": path.name, "valid": False, "error": str(e)})
    return files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--listeners", default="1,10,100,500", help="listener counts, one run each")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds each load run lasts")
    p.add_argument("--soak", type=float, metavar="SECONDS", help="instead of the load test: a soak this long")
    p.add_argument("--archive", help="the station's --archive folder (checked after a soak)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("station_args", nargs="*", help="after --: more flags for the station (e.g. --threads 1)")
    args = p.parse_args()
    counts = [int(n) for n in args.listeners.split(",")]
    if not all(1 <= n <= MAX_LISTENERS for n in counts) or not 0 < args.seconds <= MAX_SECONDS \
            or (args.soak is not None and not 0 < args.soak <= MAX_SECONDS):
        raise SystemExit(f"listeners 1..{MAX_LISTENERS}, seconds up to {MAX_SECONDS}")
    proc, url = start_station(args.ckpt, args.archive, [*args.station_args, "--seed", str(args.seed)])
    report: dict = {"ckpt": args.ckpt, "url": url, "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    try:
        if args.soak is not None:
            report["soak"] = asyncio.run(soak(url, proc.pid, args.soak, args.seed))
        else:
            report["load"] = asyncio.run(load(url, proc.pid, counts, args.seconds))
    finally:
        proc.send_signal(signal.SIGTERM)
        report["exit_status"] = proc.wait(timeout=120)
    if args.archive:
        report["archive"] = check_archive(Path(args.archive))
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
