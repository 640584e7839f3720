"""Stopping when asked: SIGTERM / Ctrl-C end `train` and `render` within seconds, and nothing is lost.

The training process runs a small driver that slows one phase down (a validation that would take a minute, a
step that takes two seconds) so the signal lands inside it; the resumed run must still end with the weights
of an uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from soundalike.checkpoint import load_checkpoint
from tests.conftest import ROOT
from tests.test_train import read_metrics, tiny_overrides

STEPS = 24
PROMPT_S = 10.0  # generous for a loaded CI machine; the slowed phases alone would take 60 s

DRIVER = r"""
import sys, time, pathlib
from soundalike import train
from soundalike.cli import main

marker, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
if mode == "validate":  # the validation at step 16 would take a minute
    real_nll = train.evaluate_nll
    def slow_nll(model, *args, **kwargs):
        if train_state["step"] == 16:
            marker.write_text("validating")
            time.sleep(60)
        return real_nll(model, *args, **kwargs)
    train.evaluate_nll = slow_nll
if mode in ("step", "twice"):  # the signal arrives in the middle of step 11
    real_step = train.Trainer.train_step
    def slow_step(self):
        if self.step == 10 and not marker.exists():
            marker.write_text("stepping")
            time.sleep(2)
        return real_step(self)
    train.Trainer.train_step = slow_step
if mode == "twice":  # saving on the first signal takes a minute; a second signal must not wait for it
    real_stop = train.Trainer._stop_now
    def slow_stop(self):
        marker.with_suffix(".stopping").write_text("stopping")
        time.sleep(60)
        real_stop(self)
    train.Trainer._stop_now = slow_stop
train_state = {"step": 0}
real_validate = train.Trainer.validate
def validate(self):
    train_state["step"] = self.step
    return real_validate(self)
train.Trainer.validate = validate
sys.exit(main(sys.argv[3:], command="train"))
"""


def train_cmd(driver: Path, marker: Path, mode: str, dataset: Path, run_root: Path) -> list[str]:
    sets = tiny_overrides(dataset, run_root, **{"train.val_every": 8, "train.ckpt_every": 8,
                                                "train.sample_count": 1})
    return [sys.executable, str(driver), str(marker), mode, "--config", str(ROOT / "configs" / "demo.yaml"),
            "--max-steps", str(STEPS), *[a for s in sets for a in ("--set", s)]]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, "the run ended before the signal could be sent"
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def straight(tiny_dataset, tmp_path_factory) -> Path:
    """An uninterrupted run of STEPS steps."""
    root = tmp_path_factory.mktemp("straight")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    subprocess.run(train_cmd(driver, root / "marker", "none", tiny_dataset, root), check=True,
                   capture_output=True)
    return root / "tiny"


@pytest.mark.parametrize("mode", ["step", "validate"])
def test_sigterm_saves_at_once_and_the_resumed_run_is_exact(mode, straight, tiny_dataset, tmp_path):
    driver, marker = tmp_path / "driver.py", tmp_path / "marker"
    driver.write_text(DRIVER)
    cmd = train_cmd(driver, marker, mode, tiny_dataset, tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(marker, proc)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    took = time.time() - sent
    assert proc.returncode == 0, err[-2000:]
    assert took < PROMPT_S, f"exited {took:.1f} s after SIGTERM"
    run = tmp_path / "tiny"
    log = (run / "train.log").read_text()
    stopped_at = 11 if mode == "step" else 16
    assert f"stopped at step {stopped_at}: received signal SIGTERM" in log
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == stopped_at
    if mode == "step":  # no validation, samples or gallery for the stop itself
        assert not (run / "samples" / f"step-{stopped_at:08d}").exists()
    else:
        assert load_checkpoint(run / "checkpoints" / "latest.pt")["validation_pending"] is True

    subprocess.run(train_cmd(driver, marker, "none", tiny_dataset, tmp_path), check=True, capture_output=True)
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == STEPS
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # every validation of the straight run happened in the resumed one too, with the same result
    val = {r["step"]: r["val_bits"] for r in read_metrics(straight) if "val_bits" in r}
    assert val == {r["step"]: r["val_bits"] for r in read_metrics(run) if "val_bits" in r}


def test_a_second_signal_exits_at_once(tiny_dataset, tmp_path):
    driver, marker = tmp_path / "driver.py", tmp_path / "marker"
    driver.write_text(DRIVER)
    proc = subprocess.Popen(train_cmd(driver, marker, "twice", tiny_dataset, tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(marker, proc)
    proc.send_signal(signal.SIGTERM)
    wait_for(marker.with_suffix(".stopping"), proc)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert time.time() - sent < PROMPT_S
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "soundalike train: interrupted"
    # the checkpoint of step 8 is whole
    assert load_checkpoint(tmp_path / "tiny" / "checkpoints" / "latest.pt")["step"] == 8


def test_render_stops_promptly_on_sigterm_and_resumes(tmp_path):
    from soundalike.checkpoint import model_payload, save_checkpoint
    from soundalike.config import Config, DataConfig
    from soundalike.models import from_config
    from soundalike.models.samplernn.config import SampleRNNConfig
    from soundalike.quantize import Quantizer

    cfg = Config(name="tiny", data=DataConfig(), model=SampleRNNConfig(frame_sizes=[4, 2], dim=16,
                 emb_size=8))
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, model_payload(from_config(cfg), Quantizer("mulaw", 256), 8000, cfg.to_dict()))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "render.py"), "--ckpt", str(ckpt), "--seconds", "3600", "--out", str(out),
           "--seed", "1", "--block-seconds", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wait_for(out / "render.json", proc)
    time.sleep(1.0)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert time.time() - sent < PROMPT_S
    assert proc.returncode == 130, err[-2000:]
    assert f"--resume {out}" in err
    generated = torch.load(out / ".render-state.pt", weights_only=True)["sampler"]["generated"]
    assert 0 < generated < 3600 * 8000
    seconds = str(generated / 8000 + 1)
    done = subprocess.run([*cmd[:2], "--resume", str(out), "--seconds", seconds], capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (out / ".render-state.pt").exists()
