"""`soundalike render` end to end on a tiny random checkpoint: files, render.json, priming, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundalike.checkpoint import build_model, load_checkpoint, model_payload, save_checkpoint
from soundalike.cli import main
from soundalike.config import Config, DataConfig
from soundalike.dataset import normalization_gain
from soundalike.emphasis import Emphasis, decode
from soundalike.models import from_config
from soundalike.models.samplernn.config import SampleRNNConfig
from soundalike.quantize import Quantizer
from soundalike.sampling import Sampler

ROOT = Path(__file__).resolve().parents[1]
RATE = 8000  # not 16 kHz: the rate must come from the checkpoint


PLAIN, EMPHASIZED = Quantizer("mulaw", 256), Quantizer("mulaw", 256, 0.85)


def make_project(tmp_path, monkeypatch, quantizer: Quantizer) -> Path:
    """A folder with runs/tiny/checkpoints/best.pt (random weights), as the working folder."""
    cfg = Config(name="tiny", data=DataConfig(quantization="mulaw", q_levels=256,
                                              pre_emphasis=quantizer.pre_emphasis),
                 model=SampleRNNConfig(frame_sizes=[4, 2], dim=16, emb_size=8))
    torch.manual_seed(0)
    model = from_config(cfg)
    path = tmp_path / "runs" / "tiny" / "checkpoints" / "best.pt"
    save_checkpoint(path, model_payload(model, quantizer, RATE, cfg.to_dict()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOUNDALIKE_RENDER_STOP_AFTER", raising=False)
    return tmp_path


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    return make_project(tmp_path, monkeypatch, PLAIN)


@pytest.fixture
def emphasized_project(tmp_path, monkeypatch) -> Path:
    """The project's checkpoint, trained (so to speak) with data.pre_emphasis 0.85."""
    return make_project(tmp_path, monkeypatch, EMPHASIZED)


def render(*args: str) -> int:
    return main(["render", *args])


def expected_levels(ckpt: Path, n: int, count: int, temps, seed: int, prime=None) -> np.ndarray:
    sampler = Sampler(build_model(load_checkpoint(ckpt)), count, temps, seed)
    if prime is not None:
        sampler.prime(prime)
    return sampler.generate(n).numpy()


def pcm(levels: np.ndarray, quantizer: Quantizer = PLAIN, skip: int = 0) -> np.ndarray:
    """Levels -> the int16 samples a 16-bit WAV of them holds (of those after the first `skip`)."""
    audio = decode(levels, quantizer)[0][..., skip:]
    buf = Path(os.environ.get("TMPDIR", "/tmp")) / f"expected-{os.getpid()}.wav"
    sf.write(buf, audio, RATE, subtype="PCM_16")
    out, _ = sf.read(buf, dtype="int16")
    buf.unlink()
    return out


def test_default_render_uses_the_newest_run_and_writes_the_contract(project, capsys):
    assert render("--seconds", "0.3", "--count", "2", "--temperature", "0.5,1.5", "--seed", "4") == 0
    folders = list((project / "renders" / "tiny").iterdir())
    assert len(folders) == 1 and len(folders[0].name) == len("YYYYmmdd-HHMMSS")
    out = folders[0]
    info = json.loads((out / "render.json").read_text())
    ckpt = project / "runs" / "tiny" / "checkpoints" / "best.pt"
    assert info["checkpoint"] == str(ckpt) and info["seconds"] == 0.3 and info["complete"]
    assert [(t["file"], t["temperature"], t["seed"]) for t in info["tracks"]] == [
        ("track-00.wav", 0.5, 4), ("track-01.wav", 1.5, 4)]
    assert sorted(p.name for p in out.iterdir()) == ["render.json", "track-00.wav", "track-01.wav"]
    levels = expected_levels(ckpt, 2400, 2, [0.5, 1.5], 4)
    for i in range(2):
        f = sf.info(out / f"track-{i:02d}.wav")
        assert (f.samplerate, f.frames, f.subtype) == (RATE, 2400, "PCM_16")
        assert np.array_equal(sf.read(out / f"track-{i:02d}.wav", dtype="int16")[0], pcm(levels[i]))
    err = capsys.readouterr()
    assert "runs/tiny/checkpoints/best.pt" in err.err and "track-01.wav: 0.3 s, temperature 1.5" in err.out


def test_the_tail_cut_defaults_to_the_models_own_and_a_flag_overrides_it(tmp_path, monkeypatch):
    """A model whose config says train.sample_min_p renders with that floor unless --min-p says otherwise (the
    project's checkpoint above has none: 0)."""
    from soundalike.config import TrainConfig

    cfg = Config(name="tiny", data=DataConfig(quantization="mulaw", q_levels=256), train=TrainConfig(sample_min_p=0.9),
                 model=SampleRNNConfig(frame_sizes=[4, 2], dim=16, emb_size=8))
    torch.manual_seed(0)
    model = from_config(cfg)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, model_payload(model, PLAIN, RATE, cfg.to_dict()))
    drawn = {}
    for name, flags in (("default", []), ("off", ["--min-p", "0"]), ("same", ["--min-p", "0.9"])):
        out = tmp_path / name
        assert render("--ckpt", str(ckpt), "--seconds", "0.2", "--seed", "3", "--out", str(out), *flags) == 0
        assert json.loads((out / "render.json").read_text())["tracks"][0]["min_p"] == (0.0 if name == "off" else 0.9)
        drawn[name] = sf.read(out / "track-00.wav", dtype="int16")[0]
    floor = Sampler(build_model(load_checkpoint(ckpt)), 1, [1.0], 3, min_p=0.9).generate(1600).numpy()
    assert np.array_equal(drawn["default"], pcm(floor[0])) and np.array_equal(drawn["default"], drawn["same"])
    assert not np.array_equal(drawn["default"], drawn["off"])


def test_interrupted_and_resumed_render_is_bitwise_identical(project, monkeypatch):
    common = ["--seconds", "1", "--block-seconds", "0.1", "--seed", "11", "--count", "2", "--temperature", "0.7"]
    assert render(*common, "--out", "whole") == 0
    monkeypatch.setenv("SOUNDALIKE_RENDER_STOP_AFTER", "3")
    assert render(*common, "--out", "part") == 130
    # Stopped after 3 blocks: playable files with exactly what was generated, and a state to resume from.
    part = project / "part"
    assert sf.info(part / "track-00.wav").frames == 3 * 800
    assert (part / ".render-state.pt").is_file()
    assert not json.loads((part / "render.json").read_text())["complete"]
    monkeypatch.setenv("SOUNDALIKE_RENDER_STOP_AFTER", "2")
    assert render("--resume", "part") == 130  # interrupted twice
    monkeypatch.delenv("SOUNDALIKE_RENDER_STOP_AFTER")
    assert render("--resume", "part") == 0
    for name in ("track-00.wav", "track-01.wav"):
        assert (part / name).read_bytes() == (project / "whole" / name).read_bytes()
    assert not (part / ".render-state.pt").exists()
    assert render("--resume", "part") == 2  # complete: nothing to resume


def test_killed_render_leaves_playable_files_and_resumes_exactly(project):
    ckpt = project / "runs" / "tiny" / "checkpoints" / "best.pt"
    args = [sys.executable, str(ROOT / "render.py"), "--ckpt", str(ckpt), "--seconds", "60",
            "--block-seconds", "0.05", "--seed", "5"]
    proc = subprocess.Popen([*args, "--out", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = project / "killed" / ".render-state.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and torch.load(state, weights_only=True)["frames"][0] >= 1600:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the render ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    frames = int(torch.load(state, weights_only=True)["frames"][0])
    audio, rate = sf.read(project / "killed" / "track-00.wav", dtype="int16")  # valid header after a kill
    assert rate == RATE and len(audio) >= frames >= 1600
    seconds = str(frames // RATE + 1)  # finish early
    assert render("--resume", "killed", "--seconds", seconds) == 0
    assert render("--ckpt", str(ckpt), "--seconds", seconds, "--seed", "5", "--out", "whole") == 0
    assert (project / "killed" / "track-00.wav").read_bytes() == (project / "whole" / "track-00.wav").read_bytes()


def test_prime_is_converted_kept_and_continued(project):
    prime_file = project / "prime.flac"
    t = np.arange(int(0.5 * 22050)) / 22050
    sf.write(prime_file, np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1), 22050)  # stereo 22 kHz
    assert render("--prime", str(prime_file), "--prime-seconds", "0.2", "--keep-prime", "--seconds", "0.1",
                  "--seed", "2", "--out", "primed") == 0
    from soundalike.render import read_prime

    prime = read_prime(str(prime_file), 0.2, RATE, Quantizer("mulaw", 256))
    assert len(prime) == 1600 and prime.min() < 40  # normalized to the dataset's peak
    got = sf.read(project / "primed" / "track-00.wav", dtype="int16")[0]
    assert len(got) == 1600 + 800
    assert np.array_equal(got[:1600], pcm(prime))
    ckpt = project / "runs" / "tiny" / "checkpoints" / "best.pt"
    assert np.array_equal(got[1600:], pcm(expected_levels(ckpt, 800, 1, 1.0, 2, prime=prime)[0]))
    info = json.loads((project / "primed" / "render.json").read_text())
    assert info["prime"]["seconds"] == 0.2 and info["prime"]["keep"]


def test_pre_emphasis_render_is_deemphasized_and_resumes_bitwise(emphasized_project, monkeypatch):
    project = emphasized_project
    common = ["--seconds", "1", "--block-seconds", "0.1", "--seed", "11", "--count", "2", "--temperature", "0.7"]
    assert render(*common, "--out", "whole") == 0
    ckpt = project / "runs" / "tiny" / "checkpoints" / "best.pt"
    levels = expected_levels(ckpt, 8000, 2, 0.7, 11)
    whole = [sf.read(project / "whole" / f"track-{i:02d}.wav", dtype="int16")[0] for i in range(2)]
    for i in range(2):
        assert np.array_equal(whole[i], pcm(levels[i], EMPHASIZED))
        assert not np.array_equal(whole[i], pcm(levels[i]))  # de-emphasis did something
    info = json.loads((project / "whole" / "render.json").read_text())
    assert info["quantization"] == {"kind": "mulaw", "levels": 256, "pre_emphasis": 0.85}

    monkeypatch.setenv("SOUNDALIKE_RENDER_STOP_AFTER", "3")
    assert render(*common, "--out", "part") == 130
    state = torch.load(project / "part" / ".render-state.pt", weights_only=True)["deemphasis"]
    # 2400 samples: the filter stopped inside one of its sub-blocks, so resuming needs the pending inputs
    assert state["carry"].shape == (2,) and state["pending"].shape == (2, 2400 % Emphasis(0.85).span) != (2, 0)
    monkeypatch.setenv("SOUNDALIKE_RENDER_STOP_AFTER", "4")
    assert render("--resume", "part") == 130
    monkeypatch.delenv("SOUNDALIKE_RENDER_STOP_AFTER")
    assert render("--resume", "part") == 0
    for name in ("track-00.wav", "track-01.wav"):
        assert (project / "part" / name).read_bytes() == (project / "whole" / name).read_bytes()


def test_pre_emphasis_prime_is_emphasized_and_the_tracks_continue_its_deemphasis(emphasized_project):
    project = emphasized_project
    prime_file = project / "prime.wav"
    t = np.arange(4000) / RATE
    sf.write(prime_file, 0.4 * np.sin(2 * np.pi * 220 * t), RATE)
    assert render("--prime", str(prime_file), "--prime-seconds", "0.2", "--seconds", "0.1", "--seed", "2",
                  "--out", "primed") == 0
    from soundalike.render import read_prime

    prime = read_prime(str(prime_file), 0.2, RATE, EMPHASIZED)
    audio = sf.read(prime_file, dtype="float32")[0][:1600].astype(np.float64)
    emphasized = Emphasis(0.85).emphasize(audio * normalization_gain(float(np.abs(audio).max())))[0]
    assert np.array_equal(prime, EMPHASIZED.quantize(emphasized))
    ckpt = project / "runs" / "tiny" / "checkpoints" / "best.pt"
    levels = np.concatenate([prime, expected_levels(ckpt, 800, 1, 1.0, 2, prime=prime)[0]])
    got = sf.read(project / "primed" / "track-00.wav", dtype="int16")[0]
    assert np.array_equal(got, pcm(levels, EMPHASIZED, skip=1600))  # not from silence: from the prime's end
    assert not np.array_equal(got, pcm(levels[1600:], EMPHASIZED))


def test_flac_output(project):
    assert render("--seconds", "0.2", "--seed", "1", "--out", "w") == 0
    assert render("--seconds", "0.2", "--seed", "1", "--out", "f", "--format", "flac") == 0
    assert sorted(p.name for p in (project / "f").iterdir()) == ["render.json", "track-00.flac"]
    assert np.array_equal(sf.read(project / "f" / "track-00.flac", dtype="int16")[0],
                          sf.read(project / "w" / "track-00.wav", dtype="int16")[0])
    assert json.loads((project / "f" / "render.json").read_text())["tracks"][0]["file"] == "track-00.flac"


@pytest.mark.parametrize("args, message", [
    (["--temperature", "0.5,1"], "2 values for --count 1"),
    (["--temperature", "hot"], "expected numbers"),
    (["--temperature", "0"], "positive"),
    (["--ckpt", "missing.pt"], "checkpoint not found"),
    (["--prime", "missing.wav"], "no such file"),
    (["--seconds", "-1"], "--seconds must be a positive number"),
    (["--count", "0"], "--count must be between 1"),
    (["--resume", "nowhere"], "no render to resume"),
    (["--keep-prime"], "--keep-prime needs --prime"),
    (["--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line(project, capsys, args, message):
    assert render(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("soundalike render: error:")


def test_no_run_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert render() == 2
    assert "no trained run found" in capsys.readouterr().err


def test_unreadable_prime(project, capsys):
    (project / "bad.wav").write_text("not audio")
    assert render("--prime", "bad.wav", "--seconds", "0.1") == 2
    assert "bad.wav: not an audio file" in capsys.readouterr().err


def test_resume_refuses_a_changed_checkpoint(project, monkeypatch, capsys):
    monkeypatch.setenv("SOUNDALIKE_RENDER_STOP_AFTER", "1")
    assert render("--seconds", "1", "--block-seconds", "0.1", "--out", "r") == 130
    ckpt = project / "runs" / "tiny" / "checkpoints" / "best.pt"
    payload = torch.load(ckpt, weights_only=False)
    payload["note"] = "trained further"
    torch.save(payload, ckpt)
    assert render("--resume", "r") == 2
    assert "changed since this render started" in capsys.readouterr().err


def test_a_render_never_overwrites_without_overwrite(project, capsys):
    out = project / "mine"
    assert render("--seconds", "0.1", "--seed", "3", "--out", str(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert render("--seconds", "0.1", "--seed", "4", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "already holds track-00.wav" in err[-1] and "--overwrite" in err[-1]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert render("--seconds", "0.1", "--seed", "4", "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "render.json").read_text())["tracks"][0]["seed"] == 4
    assert (out / "track-00.wav").read_bytes() != before["track-00.wav"]


def test_torchrun_splits_the_tracks_and_renders_what_one_process_renders(project):
    """Two processes (gloo, CPU) share 5 tracks 2 + 3 into one folder; interrupted and resumed, they end with
    the tracks and render.json of a single-process render with the same seed."""
    common = ["--seconds", "0.4", "--block-seconds", "0.1", "--count", "5", "--seed", "8",
              "--temperature", "0.6,0.8,1.0,1.2,1.4", "--threads", "1"]
    assert render(*common, "--out", "one") == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(ROOT / "render.py")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SOUNDALIKE_RENDER_STOP_AFTER": "2"}
    ckpt = project / "runs" / "tiny" / "checkpoints" / "best.pt"
    proc = subprocess.run([*torchrun, "--ckpt", str(ckpt), *common, "--out", "two"], check=False, cwd=project,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "stopped at 0.2 s" in proc.stderr, proc.stderr[-3000:]
    two = project / "two"
    assert sorted(p.name for p in two.glob(".render-state*")) == [".render-state-0-of-2.pt", ".render-state-1-of-2.pt"]
    assert not json.loads((two / "render.json").read_text())["complete"]
    assert render("--resume", "two") == 2  # one process cannot continue a render of two
    del env["SOUNDALIKE_RENDER_STOP_AFTER"]
    proc = subprocess.run([*torchrun, "--resume", "two"], check=False, cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = project / "one"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    for i in range(5):
        assert (two / f"track-{i:02d}.wav").read_bytes() == (one / f"track-{i:02d}.wav").read_bytes(), i
    info = {k: json.loads((d / "render.json").read_text()) for k, d in (("one", one), ("two", two))}
    assert info["two"].pop("processes") == 2 and info["one"].pop("processes") == 1
    assert info["one"] == info["two"]
    tracks = [sf.read(one / f"track-{i:02d}.wav", dtype="int16")[0] for i in range(5)]
    assert len({t.tobytes() for t in tracks}) == 5  # every track its own


def _rms_db(path: Path, skip_s: float = 0.0) -> float:
    audio, _ = sf.read(path, dtype="float64")
    return 10 * np.log10(np.mean(audio[round(skip_s * RATE):] ** 2))


@pytest.mark.parametrize("fixture", ["project", "emphasized_project"])
def test_hold_level_steers_the_tracks_to_the_level_and_resumes_bitwise(fixture, request, monkeypatch):
    """The tiny random model plays loud noise; held at -22 dBFS its tracks come down to it within a few seconds,
    and a render stopped and resumed writes the same bytes (the hold's state travels with the render's)."""
    project = request.getfixturevalue(fixture)
    common = ["--seconds", "6", "--block-seconds", "0.5", "--seed", "5", "--count", "2"]
    assert render(*common, "--out", "free") == 0
    assert render(*common, "--out", "held", "--hold-level", "-22") == 0
    free = [_rms_db(project / "free" / f"track-{i:02d}.wav", 3) for i in range(2)]
    held = [_rms_db(project / "held" / f"track-{i:02d}.wav", 3) for i in range(2)]
    assert min(free) > -15 and all(abs(h + 22) < 2 for h in held), (free, held)
    assert json.loads((project / "held" / "render.json").read_text())["hold_level"] == -22
    monkeypatch.setenv("SOUNDALIKE_RENDER_STOP_AFTER", "5")
    assert render(*common, "--out", "part", "--hold-level", "-22") == 130
    state = torch.load(project / "part" / ".render-state.pt", weights_only=True)
    assert state["hold"]["strength"].shape == (2,) and (state["hold"]["strength"] < 0).all()
    # an emphasized model's negative strength is its heard tilt's (models.heads), whose echo the state keeps
    assert ("heard" in state["sampler"]) == (fixture == "emphasized_project")
    if fixture == "emphasized_project":
        assert state["sampler"]["heard"]["echo"].shape == (2,) and (state["sampler"]["pull"] < 0).all()
        assert not state["sampler"]["bias"].any()
        old = project / "old"  # a state saved before the heard tilt: resumed, its tilt starts where it stopped
        old.mkdir()
        for f in (project / "part").iterdir():
            (old / f.name).write_bytes(f.read_bytes())
        for key in ("heard", "pull"):
            del state["sampler"][key]
        torch.save(state, old / ".render-state.pt")
    monkeypatch.delenv("SOUNDALIKE_RENDER_STOP_AFTER")
    if fixture == "emphasized_project":
        assert render("--resume", "old") == 0
        assert abs(_rms_db(old / "track-00.wav", 3) + 22) < 2
    assert render("--resume", "part") == 0
    # the hold's blocks count from the start, so blocks of writing that cut them (0.3 s) change nothing
    assert render(*common, "--out", "cut", "--hold-level", "-22", "--block-seconds", "0.3") == 0
    for name in ("track-00.wav", "track-01.wav"):
        for other in ("part", "cut"):
            assert (project / other / name).read_bytes() == (project / "held" / name).read_bytes(), other


def test_hold_level_holds_a_primed_render(project):
    """Primed and held: the kept prime is written as it is, and the model's continuation comes to the level."""
    prime_file = project / "prime.wav"
    t = np.arange(RATE) / RATE
    sf.write(prime_file, 0.3 * np.sin(2 * np.pi * 220 * t), RATE)
    common = ["--prime", str(prime_file), "--prime-seconds", "0.2", "--keep-prime", "--seconds", "6", "--seed", "4"]
    assert render(*common, "--out", "free") == 0
    assert render(*common, "--out", "held", "--hold-level", "-22") == 0
    free, held = (sf.read(project / d / "track-00.wav", dtype="int16")[0] for d in ("free", "held"))
    assert len(held) == len(free) == 1600 + 6 * RATE and np.array_equal(held[:1600], free[:1600])
    assert _rms_db(project / "free" / "track-00.wav", 3) > -15 and abs(_rms_db(project / "held" / "track-00.wav", 3) + 22) < 2


def test_hold_level_defaults_to_the_data_level_the_checkpoint_records(project, capsys):
    assert render("--seconds", "0.5", "--hold-level") == 2  # this checkpoint predates the record
    assert "does not record its training data's level" in capsys.readouterr().err
    assert render("--seconds", "0.5", "--out", "older") == 0  # without the option it renders at its own level
    assert json.loads((project / "older" / "render.json").read_text())["hold_level"] is None
    ckpt = project / "runs" / "tiny" / "checkpoints" / "best.pt"
    payload = load_checkpoint(ckpt)
    payload["data_level_db"] = -21.5
    save_checkpoint(ckpt, {k: v for k, v in payload.items() if k != "format"})
    assert render("--seconds", "0.5", "--seed", "3", "--hold-level", "--out", "held") == 0
    assert json.loads((project / "held" / "render.json").read_text())["hold_level"] == -21.5
    # without the option: held at that level too (the default), and free with "off"
    assert render("--seconds", "0.5", "--seed", "3", "--out", "default") == 0
    assert render("--seconds", "0.5", "--seed", "3", "--hold-level", "off", "--out", "free") == 0
    assert json.loads((project / "default" / "render.json").read_text())["hold_level"] == -21.5
    assert json.loads((project / "free" / "render.json").read_text())["hold_level"] is None
    assert (project / "default" / "track-00.wav").read_bytes() == (project / "held" / "track-00.wav").read_bytes()
    assert (project / "free" / "track-00.wav").read_bytes() != (project / "held" / "track-00.wav").read_bytes()
    assert render("--seconds", "0.5", "--hold-level", "loud") == 2
    assert "--hold-level: expected a level in dBFS, got 'loud'" in capsys.readouterr().err
    assert render("--seconds", "0.5", "--hold-level", "3") == 2
    assert "--hold-level: expected a level in dBFS from -80 to 0" in capsys.readouterr().err


def test_hold_level_refuses_a_head_it_cannot_tilt(tmp_path, monkeypatch, capsys):
    cfg = Config(name="tiny", data=DataConfig(quantization="linear", q_levels=65536),
                 model=SampleRNNConfig(frame_sizes=[4, 2], dim=16, emb_size=8, output="coarse_fine"))
    path = tmp_path / "runs" / "tiny" / "checkpoints" / "best.pt"
    save_checkpoint(path, model_payload(from_config(cfg), Quantizer("linear", 65536), RATE, cfg.to_dict()))
    monkeypatch.chdir(tmp_path)
    assert render("--seconds", "0.5", "--hold-level", "-20") == 2
    assert "has a coarse_fine head; the level hold tilts a softmax" in capsys.readouterr().err
    assert render("--seconds", "0.5", "--out", "free") == 0  # by default such a model renders at its own level
    assert json.loads((tmp_path / "free" / "render.json").read_text())["hold_level"] is None
