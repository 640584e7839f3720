"""`soundalike export`: a safetensors + JSON folder with a model card that every command takes in place of a
checkpoint, carrying every key of the checkpoint but its training state (keys it does not know included), and
loading without running code or reading outside the folder."""

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml
from safetensors import safe_open

from soundalike.checkpoint import TRAINING_STATE, load_checkpoint, model_payload, save_checkpoint
from soundalike.cli import main
from soundalike.config import Config, DataConfig
from soundalike.errors import UserError
from soundalike.evaluate import evaluate_checkpoint
from soundalike.export import export
from soundalike.models import from_config
from soundalike.models.samplernn.config import SampleRNNConfig
from soundalike.quantize import Quantizer


@pytest.fixture
def ckpt(tiny_dataset, tmp_path) -> Path:
    """runs/tiny/checkpoints/best.pt as training writes it (Adam moments, loader and RNG state), plus keys this
    code does not know: a number at the top and in the data section, and a tensor outside the state dict."""
    cfg = Config(name="tiny", data=DataConfig(path=str(tiny_dataset)),
                 model=SampleRNNConfig(frame_sizes=[4, 2], dim=16, emb_size=8))
    torch.manual_seed(0)
    model = from_config(cfg)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randint(0, 256, (2, 8 + 16)))[0].sum().backward()
    opt.step()
    payload = model_payload(model, Quantizer("mulaw", 256), 8000, cfg.to_dict())
    payload["config"]["data"]["pre_emphasis"] = 0.9
    payload.update(optimizer=opt.state_dict(), scheduler={"last_epoch": 1}, step=7, elapsed_s=3.5,
                   best_val_bits=6.25, loader={"pos": torch.arange(4)}, validation_pending=False,
                   tbptt_state=None, torch_rng=torch.get_rng_state(), cuda_rng=None, pre_emphasis=0.9,
                   filterbank=torch.randn(3, 4))
    path = tmp_path / "runs" / "tiny" / "checkpoints" / "best.pt"
    save_checkpoint(path, payload)
    return path


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_export_carries_the_model_and_renders_and_evaluates_like_the_checkpoint(ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "runs/tiny", "--out", "shared", "--clips", "2", "--clip-seconds", "0.1"]) == 0
    out = tmp_path / "shared"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "README.md", "config.json", "model.safetensors", "samples", "samples/sample-00.wav", "samples/sample-01.wav",
        "spectrogram.png"]
    config = json.loads((out / "config.json").read_text())
    assert not set(TRAINING_STATE) & set(config) and "model" not in config
    assert config["pre_emphasis"] == 0.9 and config["config"]["data"]["pre_emphasis"] == 0.9
    with safe_open(out / "model.safetensors", "pt") as f:
        names = set(f.keys())
    original, exported = load_checkpoint(ckpt), load_checkpoint(out)
    assert names == {*original["model"], "extra:filterbank"}
    assert sorted(exported) == sorted(k for k in original if k not in TRAINING_STATE)
    for key, value in original.items():
        if key == "model":
            assert all(torch.equal(value[k], exported["model"][k]) for k in value)
        elif key in TRAINING_STATE:
            continue
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, exported[key]), key
        else:
            assert exported[key] == value, key
    assert (out / "model.safetensors").stat().st_size < 0.5 * ckpt.stat().st_size

    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert "license" in meta and meta["license"] is None and meta["library_name"] == "soundalike"
    for text in ("| test | ", "marginal entropy", "](spectrogram.png)", "samples/sample-01.wav", "| recordings | 4 |",
                 "| steps | 7 |", "--init-from shared"):
        assert text in card, text

    common = ["--seconds", "0.3", "--count", "2", "--seed", "4", "--temperature", "0.9"]
    assert main(["render", "--ckpt", "shared", *common, "--out", "from-export"]) == 0
    assert main(["render", "--ckpt", str(ckpt), *common, "--out", "from-ckpt"]) == 0
    for i in range(2):
        a = sf.read(tmp_path / "from-export" / f"track-{i:02d}.wav", dtype="int16")[0]
        assert (a == sf.read(tmp_path / "from-ckpt" / f"track-{i:02d}.wav", dtype="int16")[0]).all()
    assert json.loads((tmp_path / "from-export" / "render.json").read_text())["checkpoint"] == str(out.resolve())
    assert evaluate_checkpoint("shared", "valid")["bits"] == evaluate_checkpoint(str(ckpt), "valid")["bits"]


def test_export_replaces_only_an_earlier_export(ckpt, tmp_path, capsys):
    out = tmp_path / "shared"
    export(ckpt, out, clips=0, evaluate=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["export", str(ckpt), "--out", str(out), "--clips", "0", "--no-eval"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--out", str(out), "--clips", "0", "--no-eval", "--overwrite",
                 "--name", "renamed"]) == 0
    assert {p.name for p in out.iterdir()} == set(before) and "# renamed" in (out / "README.md").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no build folder left behind


@pytest.mark.parametrize("damage, message", [
    (lambda out, c: c.update(weights="../outside.safetensors"), "points outside"),
    (lambda out, c: c.update(weights=str(out.resolve() / "model.safetensors")), "absolute path"),
    (lambda out, c: c.pop("soundalike_export"), "not a soundalike export"),
    (lambda out, c: c["model_kwargs"].update(dim={"$tensor": "extra:nothing"}), "lacks"),
])
def test_an_export_is_read_only_inside_its_folder(ckpt, tmp_path, damage, message):
    out = export(ckpt, tmp_path / "shared", clips=0, evaluate=False)
    (tmp_path / "outside.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    config = json.loads((out / "config.json").read_text())
    damage(out, config)
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=message):
        load_checkpoint(out)


def test_booby_trapped_weights_in_an_export_run_nothing(ckpt, tmp_path):
    from tests.test_bad_input import evil_file

    out = export(ckpt, tmp_path / "shared", clips=0, evaluate=False)
    evil_file(out / "model.safetensors", tmp_path / "PWNED")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_checkpoint(out)
    assert not (tmp_path / "PWNED").exists()
    (out / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not a soundalike checkpoint or export folder"):
        load_checkpoint(out)
