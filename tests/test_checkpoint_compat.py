"""Checkpoints of earlier formats, written by the code of their time (tests/fixtures/), still load the safe
way, render the samples they rendered then, evaluate and resume training to the weights they reached then."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from soundalike.checkpoint import FORMAT, build_model, load_checkpoint, quantizer_of
from soundalike.config import load_config
from soundalike.errors import UserError
from soundalike.evaluate import evaluate_checkpoint
from soundalike.models import FAMILIES
from soundalike.quantize import Quantizer
from soundalike.sampling import Sampler
from soundalike.train import Trainer
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
NAMES = [f"format{n}-{family}" for n in (1, 2) for family in ("samplernn", "wavenet")]
# What format 3 added (every older model ended in this softmax) and what came later with a default (no level input).
HEAD = {"output": "softmax", "mixtures": 10, "level_input": False}


def fixture(name: str) -> tuple[Path, dict]:
    """The checkpoint and what the code that wrote it recorded about it (see the JSON's `made_with`)."""
    return FIXTURES / f"{name}.pt", json.loads((FIXTURES / f"{name}.json").read_text())


def written_format(name: str) -> int:
    return int(name.removeprefix("format").split("-")[0])


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_loads_with_weights_only_and_renders_the_same_samples(name):
    path, record = fixture(name)
    raw = torch.load(path, weights_only=True)
    ckpt = load_checkpoint(path)
    assert raw["format"] == written_format(name) and ckpt["format"] == FORMAT and ckpt["step"] == record["step"]
    # the section is the family's own fields (format 1 kept every field of both families, format 2 the family's)
    own = FAMILIES[raw["family"]].config_keys()
    # (and the output head that format 3 added is the softmax those models had)
    assert ckpt["config"]["model"] == {"family": raw["family"], **HEAD,
                                       **{k: raw["config"]["model"][k] for k in own if k in raw["config"]["model"]}}
    assert ckpt["model_kwargs"] == {**raw["model_kwargs"], **HEAD} and not HEAD.keys() & raw["model_kwargs"].keys()
    if raw["format"] == 1:
        assert len(raw["config"]["model"]) > len(ckpt["config"]["model"])
    else:
        assert ckpt["config"]["model"] == {**raw["config"]["model"], **HEAD}
        assert not HEAD.keys() & raw["config"]["model"].keys()
    # written before pre-emphasis existed: off
    assert "pre_emphasis" not in raw["quantizer"] and "pre_emphasis" not in raw["config"]["data"]
    assert quantizer_of(ckpt) == Quantizer(raw["quantizer"]["kind"], raw["quantizer"]["levels"], 0.0)
    assert ckpt["config"]["data"]["pre_emphasis"] == 0.0
    s = record["sampler"]
    samples = Sampler(build_model(ckpt), s["batch"], s["temperature"], s["seed"]).generate(s["n"])
    assert samples.tolist() == s["samples"]
    assert len(set(samples[1].tolist())) > 4  # not a constant stream


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_evaluates_and_resumes_training(name, tiny_dataset, tmp_path, monkeypatch):
    path, record = fixture(name)
    monkeypatch.chdir(tiny_dataset.parent)  # the checkpoint's data.path is relative: `dataset`
    assert evaluate_checkpoint(str(path), "valid")["bits"] == pytest.approx(record["valid_bits"], rel=1e-6)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(load_checkpoint(path)["config"]))
    # The records were made in float32: on a CPU with bf16 (AMX, AVX512-BF16) the config's autocast would round.
    cfg = load_config(config, [f"run_root={tmp_path / 'runs'}", f"train.max_steps={record['resumed']['max_steps']}",
                               "train.amp=false"])
    run = tmp_path / "runs" / cfg.name / "checkpoints"
    run.mkdir(parents=True)
    shutil.copy(path, run / "latest.pt")
    Trainer(cfg, device="cpu").fit()
    assert torch.load(run / "latest.pt", weights_only=True)["format"] == FORMAT == 3
    after = load_checkpoint(run / "latest.pt")
    assert after["config"]["model"] == load_checkpoint(path)["config"]["model"]
    assert after["step"] == record["resumed"]["step"]
    sums = {k: float(v.double().sum()) for k, v in after["model"].items()}
    assert sums == pytest.approx(record["resumed"]["weight_sums"], rel=1e-5)


def test_a_checkpoint_of_an_unknown_format_is_a_one_line_error(tmp_path):
    path, _ = fixture(NAMES[0])
    ckpt = torch.load(path, weights_only=True)
    ckpt["format"] = FORMAT + 1
    torch.save(ckpt, tmp_path / "future.pt")
    with pytest.raises(UserError, match=rf"future.pt: not a soundalike checkpoint \(formats 1 to {FORMAT}\)$"):
        load_checkpoint(tmp_path / "future.pt")
