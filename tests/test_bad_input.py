"""The catalogue of user mistakes: every command, every kind of bad input, through the real CLI.

Each case must end with exit status 2 and one line on stderr that names the problem, no traceback, and leave
every file that existed before byte-for-byte as it was (checksums of the whole project folder). Files that
hold code (a pickle whose unpickling runs a shell command) must be refused without running it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundalike.checkpoint import model_payload, save_checkpoint
from soundalike.cli import main
from soundalike.config import Config, DataConfig
from soundalike.models import from_config
from soundalike.models.samplernn.config import SampleRNNConfig
from soundalike.quantize import Quantizer
from soundalike.slicing import make_params, slice_dataset
from tests.conftest import ROOT, plucks

RATE = 8000
PROGRESS = re.compile(r"(?:\w+: [^\n]*\[[^\n]*\])+")  # tqdm's lines: "analyse: 0s [00:00, ?s/s]"


class Evil:
    """Unpickling this runs `touch <marker>`: what a booby-trapped model file downloaded from a stranger does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_file(path: Path, marker: Path, payload: dict | None = None) -> None:
    torch.save({**(payload or {}), "format": 1, "model_kwargs": {}, "hook": Evil(marker)}, path)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_dataset) -> Path:
    """A working folder with a dataset, a run, a finished render, user files and booby-trapped files."""
    p = tmp_path_factory.mktemp("project")
    shutil.copytree(tiny_dataset, p / "data" / "ds", ignore=shutil.ignore_patterns("cache"))
    (p / "raw16").mkdir()
    sf.write(p / "raw16" / "a.wav", plucks(6.0, 16000, 9), 16000)
    slice_dataset([p / "raw16"], p / "data" / "ds16",
                  make_params(sample_rate=16000, chunk_seconds=1.0, overlap_seconds=0.0, region_seconds=1.0),
                  progress=False)
    cfg = Config(name="tiny", data=DataConfig(path=str(p / "data" / "ds")),
                 model=SampleRNNConfig(frame_sizes=[4, 2], dim=16, emb_size=8))
    torch.manual_seed(0)
    save_checkpoint(p / "runs" / "tiny" / "checkpoints" / "best.pt",
                    model_payload(from_config(cfg), Quantizer("mulaw", 256), RATE, cfg.to_dict()))
    (p / "notes.txt").write_text("a user's file\n")
    (p / "blocker").write_text("a file where a folder would be created\n")
    (p / "music").mkdir()
    for i in range(2):
        sf.write(p / "music" / f"song{i}.wav", plucks(3.0, RATE, i), RATE)
    (p / "mine" / "chunks" / "train").mkdir(parents=True)
    sf.write(p / "mine" / "chunks" / "train" / "0a1b2c3d-000000.wav", plucks(1.0, RATE, 5), RATE)
    done = p / "renders" / "done"
    done.mkdir(parents=True)
    sf.write(done / "track-00.wav", np.zeros(800, np.float32), RATE)
    (done / "render.json").write_text('{"complete": true}\n')
    (p / "junk.pt").write_bytes(os.urandom(4096))
    marker = p / "PWNED"
    evil_file(p / "evil.pt", marker)
    (p / "evilstate").mkdir()
    evil_file(p / "evilstate" / ".render-state.pt", marker, {"params": {"count": 1}})
    (p / "badstate").mkdir()
    torch.save({"params": {"count": 1}, "sampler": [1, 2]}, p / "badstate" / ".render-state.pt")
    (p / "evilrun" / "tiny" / "checkpoints").mkdir(parents=True)
    evil_file(p / "evilrun" / "tiny" / "checkpoints" / "latest.pt", marker)
    from soundalike.checkpoint import load_checkpoint
    from soundalike.export import write_weights

    for name in ("shared", "evilexport", "escape"):
        (p / name).mkdir()
        write_weights(load_checkpoint(p / "runs" / "tiny" / "checkpoints" / "best.pt"), p / name)
    evil_file(p / "evilexport" / "model.safetensors", marker)
    config = json.loads((p / "escape" / "config.json").read_text())
    (p / "escape" / "config.json").write_text(json.dumps({**config, "weights": "../shared/model.safetensors"}))
    (p / "notyaml.yaml").write_text("data: [unclosed\n")
    (p / "cfg.yaml").write_text(
        f"data: {{path: {p / 'data' / 'ds'}}}\nmodel: {{frame_sizes: [4, 2], dim: 16, emb_size: 8}}\n"
        f"train: {{batch_size: 2, seq_len: 64, max_steps: 1, sample_count: 0}}\nrun_root: {p / 'runs2'}\n")
    return p


TRAIN = ["train", "--config", "cfg.yaml"]
RENDER = ["render", "--ckpt", "runs/tiny/checkpoints/best.pt", "--seconds", "0.05"]
BEST = "runs/tiny/checkpoints/best.pt"

# (command line, what the one line must say)
CASES = {
    # slice
    "slice-out-is-a-file": (["slice", "music", "--out", "notes.txt"], "is a file"),
    "slice-out-cannot-be-created": (["slice", "music", "--out", "blocker/ds"], "cannot be created"),
    "slice-out-is-a-users-folder": (["slice", "raw16", "--out", "music"], "not empty and holds no dataset"),
    "slice-out-has-users-chunks": (["slice", "raw16", "--out", "mine"], "not empty and holds no dataset"),
    "slice-rate-zero": (["slice", "music", "--out", "new", "--sample-rate", "0"], "--sample-rate"),
    "slice-rate-huge": (["slice", "music", "--out", "new", "--sample-rate", "1000000000"], "--sample-rate"),
    "slice-rate-not-a-number": (["slice", "music", "--out", "new", "--sample-rate", "fast"], "--sample-rate"),
    "slice-chunk-nan": (["slice", "music", "--out", "new", "--chunk-seconds", "nan"], "--chunk-seconds"),
    "slice-chunk-negative": (["slice", "music", "--out", "new", "--chunk-seconds", "-1"], "--chunk-seconds"),
    "slice-overlap-inf": (["slice", "music", "--out", "new", "--overlap-seconds", "inf"], "--overlap-seconds"),
    "slice-region-zero": (["slice", "music", "--out", "new", "--region-seconds", "0"], "--region-seconds"),
    "slice-silence-nan": (["slice", "music", "--out", "new", "--silence-db", "nan"], "--silence-db"),
    "slice-split-bad": (["slice", "music", "--out", "new", "--split", "1,0,x"], "--split"),
    "slice-input-missing": (["slice", "music", "nothing-here", "--out", "new"], "nothing-here: no such file"),
    "slice-no-audio": (["slice", "notes.txt", "--out", "new"], "no usable audio"),
    "slice-input-inside-output": (["slice", "data/ds/chunks", "--out", "data/ds"], "inside the output folder"),
    # train
    "train-config-missing": (["train", "--config", "missing.yaml"], "config file not found"),
    "train-config-not-yaml": (["train", "--config", "notyaml.yaml"], "not valid YAML"),
    "train-unknown-key": ([*TRAIN, "--set", "train.learning_rate=1"], "train.learning_rate: unknown key"),
    "train-lr-negative": ([*TRAIN, "--set", "train.lr=-0.001"], "train.lr: must be positive"),
    "train-lr-nan": ([*TRAIN, "--set", "train.lr=nan"], "train.lr: expected a finite number"),
    "train-lr-inf": ([*TRAIN, "--set", "train.lr=.inf"], "train.lr: expected a finite number"),
    "train-lr-text": ([*TRAIN, "--set", "train.lr=fast"], "train.lr: expected a number"),
    "train-batch-zero": ([*TRAIN, "--set", "train.batch_size=0"], "train.batch_size: must be positive"),
    "train-grad-clip-zero": ([*TRAIN, "--set", "train.grad_clip=0"], "train.grad_clip: must be positive"),
    "train-max-steps-negative": ([*TRAIN, "--max-steps", "-1"], "train.max_steps: must not be negative"),
    "train-max-time-bad": ([*TRAIN, "--max-time", "soon"], "train.max_time"),
    "train-temperature-zero": ([*TRAIN, "--set", "train.sample_temperature=0"], "train.sample_temperature"),
    "train-model-dim-zero": ([*TRAIN, "--set", "model.dim=0"], "model.dim"),
    "train-model-frames-empty": ([*TRAIN, "--set", "model.frame_sizes=[]"], "model.frame_sizes"),
    "train-model-foreign-key": ([*TRAIN, "--set", "model.n_stacks=3"], "model.n_stacks: unknown key for family"),
    "train-model-family-unknown": ([*TRAIN, "--set", "model.family=rnn"], "model.family: unknown family"),
    "train-q-levels-huge": ([*TRAIN, "--set", "data.q_levels=100000"], "data.q_levels"),
    "train-pre-emphasis-one": ([*TRAIN, "--set", "data.pre_emphasis=1"], "data.pre_emphasis: must be"),
    "train-pre-emphasis-nan": ([*TRAIN, "--set", "data.pre_emphasis=.nan"], "data.pre_emphasis: expected a finite"),
    "train-data-missing": ([*TRAIN, "--set", "data.path=nowhere"], "does not exist"),
    "train-data-is-a-file": ([*TRAIN, "--set", "data.path=notes.txt"], "is a file"),
    "train-data-not-a-dataset": ([*TRAIN, "--set", "data.path=music"], "manifest.json is missing"),
    "train-run-root-is-a-file": ([*TRAIN, "--set", "run_root=notes.txt"], "is a file"),
    "train-name-escapes": ([*TRAIN, "--name", "../escape"], "name:"),
    "train-device-unknown": ([*TRAIN, "--device", "tpu"], "--device"),
    "train-resume-booby-trapped": ([*TRAIN, "--set", "run_root=evilrun", "--name", "tiny"], "refused to load"),
    "train-init-from-missing": ([*TRAIN, "--init-from", "missing.pt"], "checkpoint not found"),
    "train-init-from-other-model": ([*TRAIN, "--init-from", "shared", "--set", "model.dim=24"],
                                    "model.dim is 16 there, 24 here"),
    "train-init-from-booby-trapped": ([*TRAIN, "--init-from", "evil.pt"], "refused to load"),
    # evaluate
    "evaluate-ckpt-missing": (["evaluate", "--ckpt", "missing.pt"], "checkpoint not found"),
    "evaluate-ckpt-booby-trapped": (["evaluate", "--ckpt", "evil.pt"], "refused to load"),
    "evaluate-ckpt-junk": (["evaluate", "--ckpt", "junk.pt"], "not a readable soundalike checkpoint"),
    "evaluate-other-rate": (["evaluate", "--ckpt", BEST, "--data", "data/ds16"], "16000 Hz"),
    "evaluate-data-is-a-file": (["evaluate", "--ckpt", BEST, "--data", "notes.txt"], "is a file"),
    "evaluate-batch-zero": (["evaluate", "--ckpt", BEST, "--batch-size", "0"], "--batch-size"),
    "evaluate-split-unknown": (["evaluate", "--ckpt", BEST, "--split", "dev"], "--split"),
    "evaluate-device-unknown": (["evaluate", "--ckpt", BEST, "--device", "tpu"], "--device"),
    # render
    "render-ckpt-booby-trapped": (["render", "--ckpt", "evil.pt"], "refused to load"),
    "render-export-booby-trapped": (["render", "--ckpt", "evilexport"], "not a readable safetensors file"),
    "render-export-escapes": (["render", "--ckpt", "escape"], "points outside"),
    "render-ckpt-a-users-folder": (["render", "--ckpt", "music"], "not a soundalike checkpoint or export folder"),
    "render-count-zero": ([*RENDER, "--count", "0"], "--count"),
    "render-count-huge": ([*RENDER, "--count", "1000000000"], "--count"),
    "render-seconds-zero": (["render", "--ckpt", BEST, "--seconds", "0"], "--seconds"),
    "render-seconds-nan": (["render", "--ckpt", BEST, "--seconds", "nan"], "--seconds"),
    "render-seconds-inf": (["render", "--ckpt", BEST, "--seconds", "inf"], "--seconds"),
    "render-temperature-zero": ([*RENDER, "--temperature", "0"], "--temperature"),
    "render-temperature-nan": ([*RENDER, "--temperature", "nan"], "--temperature"),
    "render-temperature-text": ([*RENDER, "--temperature", "warm"], "--temperature"),
    "render-seed-negative": ([*RENDER, "--seed", "-1"], "--seed"),
    "render-threads-negative": ([*RENDER, "--threads", "-1"], "--threads"),
    "render-block-zero": ([*RENDER, "--block-seconds", "0"], "--block-seconds"),
    "render-out-is-a-file": ([*RENDER, "--out", "notes.txt"], "is a file"),
    "render-out-cannot-be-created": ([*RENDER, "--out", "blocker/x"], "cannot be created"),
    "render-out-holds-a-render": ([*RENDER, "--out", "renders/done"], "--overwrite"),
    "render-prime-missing": ([*RENDER, "--prime", "missing.wav"], "--prime"),
    "render-prime-seconds-zero": ([*RENDER, "--prime", "music/song0.wav", "--prime-seconds", "0"],
                                  "--prime-seconds"),
    "render-keep-prime-alone": ([*RENDER, "--keep-prime"], "--keep-prime"),
    "render-resume-nothing": (["render", "--resume", "music"], "no render to resume"),
    "render-resume-finished": (["render", "--resume", "renders/done"], "complete"),
    "render-resume-booby-trapped": (["render", "--resume", "evilstate"], "refused to load"),
    "render-resume-wrong-structure": (["render", "--resume", "badstate"], "wrong structure"),
    "render-no-run": (["render", "--runs", "nowhere"], "no trained run found"),
    # stats
    "stats-file-missing": (["stats", "missing.wav"], "no such file"),
    "stats-not-audio": (["stats", "notes.txt"], "notes.txt"),
    "stats-reference-not-a-dataset": (["stats", "music", "--reference", "music"], "manifest.json is missing"),
    "stats-json-overwrites-a-users-file": (["stats", "music", "--json", "notes.txt"], "not a report"),
    "stats-json-cannot-be-created": (["stats", "music", "--json", "blocker/x.json"], "is a file"),
    "stats-max-seconds-nan": (["stats", "music", "--max-seconds", "nan"], "--max-seconds"),
    # gallery
    "gallery-run-missing": (["gallery", "runs/none"], "no such run folder"),
    "gallery-not-a-run": (["gallery", "music"], "not a run folder"),
    # export
    "export-source-missing": (["export", "missing.pt", "--out", "x"], "checkpoint not found"),
    "export-source-booby-trapped": (["export", "evil.pt", "--out", "x"], "refused to load"),
    "export-out-is-a-users-folder": (["export", BEST, "--out", "music"], "holds no soundalike export"),
    "export-out-holds-an-export": (["export", BEST, "--out", "shared"], "--overwrite"),
    "export-out-is-a-file": (["export", BEST, "--out", "notes.txt"], "is a file"),
    "export-clips-negative": (["export", BEST, "--out", "x", "--clips", "-1"], "--clips"),
    "export-clip-seconds-nan": (["export", BEST, "--out", "x", "--clip-seconds", "nan"], "--clip-seconds"),
    "export-run-without-checkpoints": (["export", "runs2", "--out", "x"], "checkpoint not found"),
    # radio
    "radio-temperature-zero": (["radio", "--ckpt", BEST, "--temperature", "0"], "--temperature"),
    "radio-ckpt-booby-trapped": (["radio", "--ckpt", "evil.pt"], "refused to load"),
    "radio-offline-out-is-a-users-folder": (["radio", "--ckpt", BEST, "--offline", "1", "--out", "music"],
                                            "not empty"),
    "radio-archive-is-a-file": (["radio", "--ckpt", BEST, "--archive", "notes.txt"], "is a file"),
    "radio-icecast-without-password": (["radio", "--ckpt", BEST, "--icecast", "http://127.0.0.1:8000/r.mp3"],
                                       "no source password"),
    # keep
    "keep-not-a-run": (["keep", "music", "10"], "not a run folder"),
    "keep-step-without-weights": (["keep", "runs/tiny", "10"], "no snapshot or numbered checkpoint"),
    "keep-step-negative": (["keep", "runs/tiny", "--", "-5"], "must not be negative"),
    # demo-corpus
    "demo-corpus-out-is-a-file": (["demo-corpus", "--out", "notes.txt"], "not a folder"),
    "demo-corpus-out-is-a-users-folder": (["demo-corpus", "--out", "music"], "not empty"),
    "demo-corpus-minutes-zero": (["demo-corpus", "--out", "corpus", "--minutes", "0"], "--minutes"),
    "demo-corpus-minutes-nan": (["demo-corpus", "--out", "corpus", "--minutes", "nan"], "--minutes"),
    # the command itself
    "unknown-command": (["sing"], "invalid choice"),
    "unknown-flag": (["render", "--colour", "red"], "unrecognized arguments"),
}


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_user_mistake_is_one_line_exit_2_and_changes_nothing(case, project, monkeypatch, capsys):
    argv, expected = CASES[case]
    monkeypatch.chdir(project)
    before = checksums(project)
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    # Progress bars of work that found the mistake (reading files that turn out not to be audio) may precede it.
    lines = [ln for ln in err.strip().splitlines() if not PROGRESS.fullmatch(ln)]
    assert code == 2, err
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    after = checksums(project)
    assert {k: after.get(k) for k in before} == before, "a file that existed before was changed"
    assert "PWNED" not in after, "a loaded file ran code"


def test_the_catalogue_covers_every_command():
    from soundalike.cli import COMMANDS

    covered = {argv[0] for argv, _ in CASES.values()}
    assert set(COMMANDS) <= covered, set(COMMANDS) - covered


@pytest.mark.parametrize("argv", [
    ["render", "--ckpt", "evil.pt"],
    ["evaluate", "--ckpt", "evil.pt"],
    ["render", "--resume", "evilstate"],
    ["train", "--config", "cfg.yaml", "--set", "run_root=evilrun", "--name", "tiny"],
    ["train", "--config", "cfg.yaml", "--init-from", "evil.pt"],
], ids=["render", "evaluate", "render-resume", "train-resume", "train-init-from"])
def test_a_booby_trapped_file_runs_nothing_in_a_real_process(argv, project):
    """The five ways a shared file is loaded, as separate processes (`python -m soundalike`): no code runs."""
    proc = subprocess.run([sys.executable, "-m", "soundalike", *argv], check=False, cwd=project, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "refused to load" in proc.stderr and "GLOBAL posix.system" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / "PWNED").exists()


def test_python_dash_m_soundalike_is_the_console_script():
    proc = subprocess.run([sys.executable, "-m", "soundalike", "--help"], check=False, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0 and "slice" in proc.stdout and "render" in proc.stdout
