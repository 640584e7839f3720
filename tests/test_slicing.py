"""`soundalike slice` end to end on a tiny generated folder of good and bad files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundalike import __version__, slicing
from soundalike.cli import main
from soundalike.errors import UserError
from soundalike.slicing import make_params, slice_dataset

RATE, CHUNK, OVERLAP = 8000, 4.0, 1.0
ARGS = ["--sample-rate", "8000", "--chunk-seconds", "4", "--overlap-seconds", "1", "--region-seconds", "12"]
ROOT = Path(__file__).resolve().parents[1]


def tone(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def raw(tmp_path) -> Path:
    """40 s mono WAV with 8 s of digital silence, 30 s stereo 48 kHz FLAC, a 3 s file and four bad files."""
    raw = tmp_path / "artist" / "raw"
    (raw / "album").mkdir(parents=True)
    a = tone(40, 16000, 0)
    a[20 * 16000: 28 * 16000] = 0
    sf.write(raw / "a.wav", a, 16000)
    b = tone(30, 48000, 1)
    sf.write(raw / "album" / "b.flac", np.stack([b, 0.5 * b], axis=1), 48000)
    sf.write(raw / "short.wav", tone(3, 22050, 2), 22050)
    sf.write(raw / "corrupt.flac", tone(5, 16000, 3), 16000)
    data = bytearray((raw / "corrupt.flac").read_bytes())
    data[3000:] = bytes(len(data) - 3000)
    (raw / "corrupt.flac").write_bytes(bytes(data))
    (raw / "notes.wav").write_text("not audio\n")
    (raw / "empty.wav").write_bytes(b"")
    (raw / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A mp42isom" + bytes(200))
    (raw / ".DS_Store").write_bytes(b"\x00junk")
    return raw


def params(**kw) -> dict:
    return make_params(RATE, CHUNK, OVERLAP, region_seconds=12.0, **kw)


def run(raw: Path, **kw) -> tuple[dict, Path]:
    out = raw.parent / "dataset"
    return slice_dataset([raw], out, params(**kw), progress=False), out


def chunk_state(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in (out / "chunks").rglob("*.wav")}


def count_decodes(monkeypatch) -> list:
    calls = []
    real = slicing.iter_blocks

    def counting(path, *a, **kw):
        calls.append(Path(path).name)
        return real(path, *a, **kw)

    monkeypatch.setattr(slicing, "iter_blocks", counting)
    return calls


def check_dataset(out: Path, m: dict) -> None:
    """Every chunk exists, is 16-bit mono at the rate, has the manifest's length; nothing else is there."""
    files = {c["file"] for c in m["chunks"]}
    assert len(files) == len(m["chunks"])
    assert set(chunk_state(out)) == files
    for c in m["chunks"]:
        info = sf.info(out / c["file"])
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
        assert info.frames == c["samples"]
        assert c["file"].startswith(f"chunks/{c['split']}/{c['source'][:8]}-")


def test_slices_good_files_and_skips_bad_ones(raw):
    m, out = run(raw)
    check_dataset(out, m)
    assert m["format"] == 1 and m["tool_version"] == __version__
    assert m["params"]["splits"] == {"train": 0.88, "valid": 0.06, "test": 0.06}
    assert m["params"]["sample_rate"] == RATE and m["params"]["silence_db"] == -50.0

    skipped = {s["path"]: s["reason"] for s in m["skipped"]}
    assert set(skipped) == {f"raw/{n}" for n in ("corrupt.flac", "notes.wav", "empty.wav", "song.m4a",
                                                  "short.wav")}
    assert "shorter than one chunk" in skipped["raw/short.wav"]
    assert "empty" in skipped["raw/empty.wav"]
    for name in ("corrupt.flac", "notes.wav", "song.m4a"):
        assert skipped[f"raw/{name}"].startswith("not an audio file libsndfile can read")

    sources = {s["path"]: s for s in m["sources"]}
    assert set(sources) == {"raw/a.wav", "raw/album/b.flac"}
    b = sources["raw/album/b.flac"]
    assert (b["sample_rate"], b["channels"], b["format"], b["duration"]) == (48000, 2, "FLAC", 30.0)
    assert b["size"] == (raw / "album" / "b.flac").stat().st_size and len(b["sha256"]) == 64

    # Two chunks lie wholly inside a.wav's 8 s of silence.
    assert m["summary"]["silent_dropped"] == 2
    assert all(m["summary"]["chunks"][s] > 0 for s in ("train", "valid", "test"))
    assert sum(m["summary"]["chunks"].values()) == len(m["chunks"])
    assert m["summary"]["hours_in"] == pytest.approx(70 / 3600, rel=1e-4)

    # One dataset gain from the peak; chunks keep the source level (a's tone is 0.3 at full rate).
    peak = max(s["analysis"]["peak"] for s in m["sources"])
    assert m["gain"] == pytest.approx(0.98 / peak, rel=1e-5) and m["storage_scale"] == 1.0
    first = next(c for c in m["chunks"] if c["source"] == sources["raw/a.wav"]["sha256"] and c["offset"] == 0)
    x, _ = sf.read(out / first["file"])
    assert np.abs(x).max() == pytest.approx(peak, abs=0.1) and np.abs(x).max() < 0.6


def test_no_overlap_across_splits(raw):
    for seed in range(4):
        m, _ = run(raw, seed=seed)
        by_source = {}
        for c in m["chunks"]:
            start = round(c["offset"] * RATE)
            by_source.setdefault(c["source"], []).append((start, start + c["samples"], c["split"]))
        for chunks in by_source.values():
            for s0, e0, split0 in chunks:
                for s1, e1, split1 in chunks:
                    assert split0 == split1 or e0 <= s1 or e1 <= s0


def test_rerun_reuses_work_and_force_rebuilds(raw, monkeypatch):
    m1, out = run(raw)
    before = chunk_state(out)
    manifest = (out / "manifest.json").read_bytes()

    decodes = count_decodes(monkeypatch)
    run(raw)
    # Only the short and the bad-but-openable files are looked at again; no source is decoded.
    assert not {"a.wav", "b.flac"} & set(decodes)
    assert chunk_state(out) == before and (out / "manifest.json").read_bytes() == manifest

    decodes.clear()
    m3 = slice_dataset([raw], out, params(), force=True, progress=False)
    assert decodes.count("a.wav") == 2 and decodes.count("b.flac") == 2  # analysis and writing
    assert m3["chunks"] == m1["chunks"] and chunk_state(out) == before  # same audio keeps its files

    m4, _ = run(raw, seed=1)  # other parameters: a new split of the same audio
    check_dataset(out, m4)
    assert m4["params"]["seed"] == 1


def test_new_file_reuses_existing_analysis(raw, monkeypatch):
    run(raw)
    sf.write(raw / "c.wav", tone(20, 8000, 5), 8000)
    decodes = count_decodes(monkeypatch)
    m, out = run(raw)
    check_dataset(out, m)
    assert decodes.count("a.wav") <= 1 and decodes.count("b.flac") <= 1  # no second analysis
    assert len(m["sources"]) == 3


def test_killed_run_leaves_old_dataset(raw, monkeypatch):
    old, out = run(raw)
    old_bytes = (out / "manifest.json").read_bytes()
    old_audio = {c["file"]: sf.read(out / c["file"], dtype="int16")[0] for c in old["chunks"]}

    writes = []
    real = slicing.write_wav

    def dying(*a, **kw):
        if len(writes) == 5:
            raise KeyboardInterrupt
        writes.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(slicing, "write_wav", dying)
    new = {"chunk_seconds": 3.0, "overlap_seconds": 0.5}
    with pytest.raises(KeyboardInterrupt):
        slice_dataset([raw], out, make_params(RATE, region_seconds=12.0, **new), progress=False)
    assert len(writes) == 5
    assert (out / "manifest.json").read_bytes() == old_bytes
    for f, audio in old_audio.items():  # old chunks are all there, untouched
        np.testing.assert_array_equal(sf.read(out / f, dtype="int16")[0], audio)

    monkeypatch.setattr(slicing, "write_wav", real)
    m = slice_dataset([raw], out, make_params(RATE, region_seconds=12.0, **new), progress=False)
    assert m["params"]["chunk_seconds"] == 3.0
    assert {c["samples"] for c in m["chunks"]} == {3 * RATE}
    assert set(chunk_state(out)) == {c["file"] for c in m["chunks"]}  # old files gone, no temp files
    assert not list(out.rglob("*.tmp"))


def test_cli_summary(raw, capsys):
    out = raw.parent / "dataset"
    assert main(["slice", str(raw), "--out", str(out), *ARGS]) == 0
    text = capsys.readouterr().out
    assert "sliced 2 files" in text and "skipped 5 files" in text and "silent chunks dropped: 2" in text
    assert "raw/short.wav: shorter than one chunk" in text
    for split in ("train", "valid", "test"):
        assert f"  {split}" in text
    assert json.loads((out / "manifest.json").read_text())["summary"]["silent_dropped"] == 2


def test_nothing_usable_is_one_line_error(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "notes.wav").write_text("not audio\n")
    (raw / "empty.wav").write_bytes(b"")
    sf.write(raw / "short.wav", tone(1, 8000, 0), 8000)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "slice.py"), str(raw), "--out",
                        str(tmp_path / "ds"), *ARGS], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("soundalike slice: error:")]
    assert len(errors) == 1 and "no usable audio" in errors[0] and "3 files skipped" in errors[0]
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_all_silent_and_bad_params_are_user_errors(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    sf.write(raw / "quiet.wav", np.zeros(10 * 8000, np.float32), 8000)
    with pytest.raises(UserError, match="silent"):
        slice_dataset([raw], tmp_path / "ds", params(), progress=False)
    with pytest.raises(UserError, match="inside the output folder"):
        slice_dataset([raw], tmp_path, params(), progress=False)
    for bad in ({"split": "0.5,0.5"}, {"split": "0.9,0.2,0.1"}, {"overlap_seconds": 5.0}):
        with pytest.raises(UserError):
            make_params(RATE, CHUNK, **{"overlap_seconds": OVERLAP, **bad})


def test_inputs_are_not_modified(raw):
    state = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in raw.rglob("*") if p.is_file()}
    run(raw)
    assert state == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in raw.rglob("*") if p.is_file()}


def test_audio_above_full_scale_is_stored_scaled_not_clipped(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    sf.write(raw / "hot.wav", 4 * tone(12, 8000, 0), 8000, subtype="FLOAT")  # peaks near 1.6
    m = slice_dataset([raw], tmp_path / "ds", params(), progress=False)
    peak = m["sources"][0]["analysis"]["peak"]
    assert peak > 1.2 and m["storage_scale"] == pytest.approx(1 / peak)
    stored = max(np.abs(sf.read(tmp_path / "ds" / c["file"])[0]).max() for c in m["chunks"])
    assert 0.9 < stored <= 1.0
    assert stored * m["gain"] == pytest.approx(0.98, abs=0.01)  # what the loader sees after its gain


def test_slice_never_removes_a_file_it_did_not_write(raw):
    """User files inside a dataset's chunks folder survive reslicing; a killed run's chunks do not linger."""
    m, out = run(raw)
    mine = out / "chunks" / "train" / f"{m['chunks'][0]['source'][:8]}-000999.wav"
    sf.write(mine, tone(1, RATE, 7), RATE)
    (out / "chunks" / "notes.txt").write_text("mine\n")
    before = mine.read_bytes()
    slice_dataset([raw], out, make_params(RATE, region_seconds=12.0, chunk_seconds=3.0, overlap_seconds=0.5),
                  progress=False)
    assert mine.read_bytes() == before and (out / "chunks" / "notes.txt").is_file()
    assert not (out / ".slice-journal").exists()


def test_killed_slice_into_a_new_folder_can_be_rerun(raw, monkeypatch):
    """The journal proves which chunk files a killed first run wrote: the rerun removes them, nothing else."""
    out = raw.parent / "fresh"
    real, writes = slicing.write_wav, []

    def dying(*a, **kw):
        if len(writes) == 3:
            raise KeyboardInterrupt
        writes.append(Path(a[0]))
        return real(*a, **kw)

    monkeypatch.setattr(slicing, "write_wav", dying)
    with pytest.raises(KeyboardInterrupt):
        slice_dataset([raw], out, make_params(RATE, region_seconds=12.0), progress=False)
    assert all(w.is_file() for w in writes) and not (out / "manifest.json").exists()
    monkeypatch.setattr(slicing, "write_wav", real)
    m = slice_dataset([raw], out, make_params(RATE, region_seconds=12.0, chunk_seconds=3.0,
                                              overlap_seconds=0.5), progress=False)
    assert set(chunk_state(out)) == {c["file"] for c in m["chunks"]}


def test_slice_refuses_a_folder_that_is_not_a_dataset(raw, tmp_path):
    out = tmp_path / "photos"
    (out / "chunks" / "train").mkdir(parents=True)
    sf.write(out / "chunks" / "train" / "0a1b2c3d-000000.wav", tone(1, RATE, 8), RATE)
    before = (out / "chunks" / "train" / "0a1b2c3d-000000.wav").read_bytes()
    with pytest.raises(UserError, match="not empty and holds no dataset"):
        slice_dataset([raw], out, make_params(RATE), progress=False)
    assert (out / "chunks" / "train" / "0a1b2c3d-000000.wav").read_bytes() == before
    assert sorted(p.name for p in out.rglob("*")) == ["0a1b2c3d-000000.wav", "chunks", "train"]
