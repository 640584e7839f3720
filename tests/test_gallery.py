"""The gallery page of a run: contents, ordering, caching, robustness, and a real headless-browser check."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf

from soundalike import cli
from soundalike.gallery import SELFTEST_JS, build_gallery

RATE = 8000
NAME = "demo-0a1b2c"


def notes(seconds: float, seed: int) -> np.ndarray:
    """Decaying harmonic notes of random pitch, a quarter second each."""
    rng = np.random.default_rng(seed)
    n = int(0.25 * RATE)
    t = np.arange(n) / RATE
    out = [0.3 * np.exp(-8 * t) * sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3))
           for f in 110 * 2 ** (rng.integers(0, 12, int(seconds / 0.25)) / 12)]
    return np.concatenate(out).astype(np.float32)


def make_project(root: Path) -> Path:
    """data/demo (a sliced dataset), runs/<NAME> (config, metrics, samples of two checkpoints) and two
    renders in renders/<NAME>/, per docs/CONTRACTS.md; returns the run folder."""
    dataset = root / "data" / "demo"
    chunks = []
    for split, count in (("train", 4), ("valid", 3)):
        for i in range(count):
            name = f"chunks/{split}/0a1b2c3d-{i:06d}.wav"
            (dataset / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(dataset / name, notes(1.5, seed=i + 10 * (split == "valid")), RATE, subtype="PCM_16")
            chunks.append({"file": name, "source": "x", "offset": 0.0, "samples": int(1.5 * RATE),
                           "split": split})
    manifest = {"format": 1, "params": {"sample_rate": RATE}, "gain": 1.0, "chunks": chunks,
                "summary": {"hours": {"train": 0.002}}}
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    run = root / "runs" / NAME
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("data:\n  path: data/demo\nmodel:\n  dim: 64\n")
    lines = []
    for s in range(50, 1001, 50):
        m = {"step": s, "elapsed_s": 9.0 * s, "train_bits": 8 - s / 250}
        val = {"val_bits": 8.2 - s / 250, "val_bits16": 14.2 - s / 250}
        lines.append(json.dumps({**m, **val} if s % 500 == 0 else m))
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 1050, "train_')  # a line being written
    rng = np.random.default_rng(0)
    for step, clips in ((500, [0.2 * rng.standard_normal(RATE) for _ in range(2)]),
                        (1000, [notes(1.0, seed=s) for s in (1, 2)])):
        folder = run / "samples" / f"step-{step:08d}"
        folder.mkdir(parents=True)
        for i, clip in enumerate(clips):
            sf.write(folder / f"sample-{i:02d}.wav", clip, RATE, subtype="PCM_16")
            meta = {"step": step, "temperature": 1.0, "seed": 7 + i, "seconds": 1.0,
                    "checkpoint": f"runs/{NAME}/checkpoints/latest.pt"}
            (folder / f"sample-{i:02d}.json").write_text(json.dumps(meta))
    for stamp, count in (("20260101-120000", 1), ("20260102-090000", 2)):
        folder = root / "renders" / NAME / stamp
        folder.mkdir(parents=True)
        tracks = []
        for i in range(count):
            sf.write(folder / f"track-{i:02d}.wav", notes(2.0, seed=20 + i), RATE, subtype="PCM_16")
            tracks.append({"file": f"track-{i:02d}.wav", "temperature": 0.95, "seed": 100 + i})
        (folder / "render.json").write_text(json.dumps({"checkpoint": f"runs/{NAME}/checkpoints/best.pt",
                                                        "seconds": 2.0, "tracks": tracks}))
    return run


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """A project whose gallery was built once (read-only for the tests that use it)."""
    run = make_project(tmp_path_factory.mktemp("project"))
    page = build_gallery(run)
    return run, page.read_text(encoding="utf-8")


@pytest.fixture
def project(built, tmp_path) -> Path:
    """A private copy of the built project (mtimes kept), to change."""
    root = built[0].parents[1]
    shutil.copytree(root, tmp_path / "p", copy_function=shutil.copy2)
    return tmp_path / "p" / "runs" / NAME


def test_page_shows_every_clip_newest_first(built):
    run, page = built
    assert (run / "gallery.html").is_file()
    assert page.count("<audio") == 2 + 2 + 3 + 2  # samples of 2 checkpoints, 3 render tracks, 2 data examples
    assert page.index("Step 1,000") < page.index("Step 500")
    assert page.index("Render 20260102-090000") < page.index("Render 20260101-120000")
    assert "2 noise" in page and "2 ok" in page  # the white-noise checkpoint is flagged
    assert "temperature 0.95" in page and "seed 101" in page and "best.pt" in page and "latest.pt" in page
    assert "Fréchet" in page and "train split" in page  # the data section with its anchors
    assert "valid split" in page and "train split" in page  # the two example chunks


def test_validation_nll_is_shown_in_both_units(built):
    _, page = built
    assert "best validation 4.2000 bits/sample (10.2000 at 16-bit resolution)" in page
    table = page[page.index('<div class="overview">'):]
    table = table[:table.index("</table>")]
    assert "<th>at 16-bit</th>" in table
    assert "<td>4.2000</td><td>10.2000</td>" in table and "<td>6.2000</td><td>12.2000</td>" in table


def test_page_is_self_contained_and_lazy(built):
    run, page = built
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<link" not in page and "<script src" not in page
    assert page.count('preload="none"') == page.count("<audio")
    images = re.findall(r"<img [^>]*>", page)
    assert sum('loading="lazy"' in i for i in images) == len(images) - 1  # all but the curves at the top
    for src in re.findall(r'src="([^"]+)"', page):
        target = (run / unquote(html.unescape(src))).resolve()
        assert target.is_file(), src
        assert target.suffix in (".wav", ".png")


def test_pictures_are_cached_until_the_wav_changes(project):
    pngs = sorted((project / "gallery").rglob("*.png"))
    before = {p: p.stat().st_mtime_ns for p in pngs}
    build_gallery(project)
    assert {p: p.stat().st_mtime_ns for p in pngs} == before
    wav = project / "samples" / "step-00001000" / "sample-00.wav"
    sf.write(wav, 0.2 * np.random.default_rng(1).standard_normal(RATE), RATE)
    later = max(before.values()) / 1e9 + 10
    os.utime(wav, (later, later))
    page = build_gallery(project).read_text(encoding="utf-8")
    changed = {p for p in pngs if p.stat().st_mtime_ns != before[p]}
    cache = project / "gallery" / "samples" / "step-00001000"
    assert changed == {cache / "sample-00.mel.png", cache / "sample-00.wave.png"}
    assert "1 noise" in page  # the statistics were redone too


def test_page_judges_clips_against_the_data(project):
    """Hiss and crackle in a checkpoint's samples are named; the data's own chunks stay ok. A reference cached
    before the levels existed is made again."""
    folder = project / "samples" / "step-00001000"
    clean = notes(1.0, seed=1)
    hissy = clean + 10 ** (-40 / 20) * np.random.default_rng(5).standard_normal(len(clean))
    crackly = clean.copy()
    crackly[np.random.default_rng(6).choice(len(clean), 30, replace=False)] += 0.2
    for i, clip in ((2, hissy), (3, crackly)):
        sf.write(folder / f"sample-{i:02d}.wav", clip, RATE, subtype="PCM_16")
    cached = project / "gallery" / "reference.npz"
    with np.load(cached) as z:
        np.savez(cached, **{k: z[k] for k in z.files if not k.startswith("levels_") and k != "format"})
    page = build_gallery(project).read_text(encoding="utf-8")
    assert "4 clips · 2 ok, 1 crackle, 1 hiss" in page
    assert re.search(r'class="badge v-hiss" title="noise floor above 2 kHz \+\d+\.\d dB over the data', page)
    assert "dB vs data" in page and "clicks" in page and "noise floor 1-2k" in page
    data = page[page.index("<h2>Training data</h2>"):]
    assert data.count('class="badge v-ok"') == data.count('class="badge ')  # every chunk shown is ok
    with np.load(cached) as z:
        assert "levels_rms_db" in z.files


def test_a_bare_or_broken_run_still_gets_a_page(tmp_path, project):
    bare = tmp_path / "runs" / "empty"
    bare.mkdir(parents=True)
    page = build_gallery(bare).read_text(encoding="utf-8")
    assert "No metrics yet" in page and "No samples yet" in page and "No dataset found" in page
    (project / "config.yaml").write_text("data: [unexpected")
    (project / "samples" / "step-00000500" / "sample-01.wav").write_bytes(b"RIFF but not really")
    page = build_gallery(project).read_text(encoding="utf-8")
    assert "unreadable" in page and "No dataset found" in page


def test_gallery_command(project, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    shutil.copytree(project.parents[1] / "renders" / NAME / "20260101-120000", other / "20300101-000000")
    assert cli.main(["gallery", str(project), "--renders", str(other)]) == 0
    assert "gallery.html" in capsys.readouterr().out
    page = (project / "gallery.html").read_text(encoding="utf-8")
    assert "Render 20300101-000000" in page and "Render 20260102-090000" not in page
    assert cli.main(["gallery", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--allow-file-access-from-files",
    "--mute-audio", "--hide-scrollbars", "--autoplay-policy=no-user-gesture-required",
]
needs_chromium = pytest.mark.skipif(_chromium() is None,
                                    reason="no chromium binary (/usr/bin/chromium, chromium-browser, ...)")


def _selftest(page: Path, profile: Path) -> dict:
    """Open the page with ?selftest=1 in headless Chromium: what its script found in each player and image."""
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
           "--dump-dom", page.as_uri() + "?selftest=1"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="selftest">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, f"no self-test result in the page; chromium said: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@needs_chromium
def test_page_in_headless_chromium(built, tmp_path):
    run, page = built
    result = _selftest(run / "gallery.html", tmp_path / "profile")
    assert len(result["audio"]) == page.count("<audio") and len(result["images"]) == page.count("<img")
    assert all(a["duration"] > 0 for a in result["audio"]), result["audio"]
    assert all(i["width"] > 0 for i in result["images"]), result["images"]

    shot = tmp_path / "gallery.png"
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--window-size=1200,1600", f"--screenshot={shot}",
           (run / "gallery.html").as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1200, 1600)
        assert len(np.unique(np.asarray(img.convert("L").resize((60, 80))))) > 20  # not a blank page


@needs_chromium
def test_browser_self_test_notices_broken_media(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><audio controls preload="none" src="missing.wav"></audio>'
                    f'<img loading="lazy" src="missing.png"><script>{SELFTEST_JS}</script></body></html>')
    result = _selftest(page, tmp_path / "profile")
    assert result == {"audio": [{"src": "missing.wav", "duration": 0}],
                      "images": [{"src": "missing.png", "width": 0}]}
