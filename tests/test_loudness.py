"""Loudness conditioning (`model.level_input`, `soundalike.loudness`): chunk levels, the models' level input,
its folding into biases for sampling, training, `--init-from` and `render --level`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from soundalike import loudness
from soundalike.checkpoint import load_checkpoint, save_checkpoint, without_training_state
from soundalike.cli import main
from soundalike.config import load_config
from soundalike.data import AudioDataset, ReferenceTBPTTLoader, TBPTTLoader, eval_batches
from soundalike.emphasis import decode
from soundalike.errors import UserError
from soundalike.models import build
from soundalike.quantize import Quantizer
from soundalike.sampling.reference import generate
from soundalike.slicing import make_params, slice_dataset
from soundalike.train import Trainer

from .conftest import ROOT
from .test_train import tiny_overrides

TINY = {
    "samplernn": {"frame_sizes": [4, 2], "dim": 16, "emb_size": 8, "q_levels": 256},
    "wavenet": {"n_stacks": 1, "n_layers": 3, "residual_channels": 8, "dilation_channels": 8, "skip_channels": 8,
                "out_channels": 16, "q_levels": 256},
}


def test_levels_are_read_back_in_dbfs():
    rng = np.random.default_rng(0)
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    assert loudness.rms_db(0.5 * tone) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)  # -9.03
    assert loudness.rms_db(np.zeros(100)) == loudness.FLOOR_DB == loudness.rms_db(np.zeros(0))
    # Played one after the other, a loud and a quiet chunk sound at their energy over their samples, not at the
    # mean of their dB.
    loud, quiet = 0.5 * tone, 0.005 * rng.standard_normal(24000)
    both = loudness.rms_db(np.concatenate([loud, quiet]))
    assert float(loudness.energy_db(np.sum(loud ** 2) + np.sum(quiet ** 2), 8000 + 24000)) == \
        pytest.approx(both, abs=1e-6)
    assert both > (loudness.rms_db(loud) + loudness.rms_db(quiet)) / 2 + 10
    # From the data's level in steps of 6 dB, clamped to [-80, 0] dBFS.
    assert loudness.feature(torch.tensor([-200.0, -20.0, -14.0, 3.0]), -20.0).tolist() == \
        pytest.approx([-10.0, 0.0, 1.0, 20 / 6])


@pytest.mark.parametrize("family", ["samplernn", "wavenet"])
def test_a_fresh_level_input_changes_nothing_and_folding_it_is_exact(family):
    torch.manual_seed(0)
    plain = build(family, TINY[family]).double().eval()
    torch.manual_seed(0)
    model = build(family, {**TINY[family], "level_input": True}).double().eval()
    x = torch.randint(0, 256, (3, model.lookback + 2 * model.lookback if family == "samplernn" else model.lookback + 40))
    with torch.no_grad():
        # Zero weights: the model computes what the same model without the input does, at any level.
        for level in (-60.0, -6.0):
            assert torch.equal(model(x, level=torch.full((3,), level, dtype=torch.float64))[0], plain(x)[0])
        model.level_proj.weight.normal_(std=3.0)
        levels = torch.tensor([-30.0, -12.0, -12.0], dtype=torch.float64)
        told = model(x, level=levels)[0]
        assert not torch.allclose(told[0], told[1])  # the level matters
        folded = loudness.at_level(model, -12.0)
        assert not folded.level_input and folded.kwargs["level_input"] is False and model.level_input
        assert "level_default" not in folded.state_dict() and "level_proj.weight" not in folded.state_dict()
        torch.testing.assert_close(folded(x)[0][1:], told[1:], rtol=0, atol=1e-12)
        # The folded model is a plain one: rebuilt from its kwargs, it loads its weights.
        build(family, folded.kwargs).double().load_state_dict(folded.state_dict())
        # No level given: the model's own default, which sampling folds in too.
        model.level_default.fill_(-30.0)
        at_default = model(x, level=torch.full((3,), -30.0, dtype=torch.float64))[0]
        torch.testing.assert_close(model(x)[0], at_default, rtol=0, atol=1e-12)
        assert torch.equal(generate(model, 64, batch=2, seed=3), generate(loudness.at_level(model, -30.0), 64, 2,
                                                                         seed=3))
        assert not torch.equal(generate(model, 64, batch=2, seed=3), generate(loudness.at_level(model, -3.0), 64,
                                                                             2, seed=3))
    assert loudness.at_level(plain) is plain


def _two_level_dataset(root, rate=8000):
    """Two recordings of the same plucks, one 30 dB under the other, sliced into 1 s chunks."""
    from .conftest import plucks

    raw = root / "raw"
    raw.mkdir()
    for i, gain in enumerate((1.0, 0.0316)):
        sf.write(raw / f"take{i}.wav", gain * plucks(12.0, rate, i), rate)
    out = root / "dataset"
    slice_dataset([raw], out, make_params(sample_rate=rate, chunk_seconds=1.0, overlap_seconds=0.0,
                                          split="0.7,0.15,0.15", region_seconds=2.0, silence_db=-80.0),
                  progress=False)
    return out


def _coming_second(audio: np.ndarray, pos: int, rate: int) -> float:
    """The level a window is told, computed plainly: whole 64-sample blocks from the one holding `pos` through
    the one holding `pos` + 1 s - 1, or to the chunk's end (its last block when `pos` is past it)."""
    n, block = len(audio), loudness.BLOCK
    blocks = -(-n // block)
    a = min(pos // block, blocks - 1)
    b = min(max(-(-(pos + rate) // block), a + 1), blocks)
    return loudness.rms_db(audio[a * block: min(b * block, n)])


def test_windows_are_told_the_level_of_the_coming_second(tmp_path):
    root = _two_level_dataset(tmp_path)
    q = Quantizer("mulaw", 256, 0.85)
    ds = AudioDataset(root, q, "train")
    audio = [decode(ds.chunk(i), q)[0] for i in range(len(ds.lengths))]
    for i, path in enumerate(ds.files):  # the levels read back through 8 bits are the chunk files' at the gain
        assert ds.levels_db[i] == pytest.approx(loudness.rms_db(sf.read(path)[0] * ds.gain), abs=0.5), path
        assert ds.levels_db[i] == pytest.approx(loudness.rms_db(audio[i]), abs=1e-3)
    assert ds.levels_db.max() - ds.levels_db.min() > 25
    assert ds.level_db == pytest.approx(loudness.rms_db(np.concatenate(audio)), abs=1e-3)
    rate, T = ds.sample_rate, 512
    for loader in (TBPTTLoader(ds, 4, T, 8, seed=1, with_levels=True),
                   ReferenceTBPTTLoader(ds, 4, T, 8, seed=1, with_levels=True)):
        for _ in range(30):
            batch = next(loader)
            expected = [_coming_second(audio[c], p, rate) for c, p in zip(loader._chunk, loader._pos - T)]
            np.testing.assert_allclose(batch.level.numpy(), expected, atol=1e-3)
    assert next(TBPTTLoader(ds, 4, T, 8, seed=1)).level is None
    for k, window in enumerate(eval_batches(ds, 3, 4000, 8, with_levels=True)):  # 8000-sample chunks
        expected = [_coming_second(audio[c], k * 4000, rate) for c in range(3)]
        np.testing.assert_allclose(window.level.numpy(), expected, atol=1e-3)
        if k == 1:
            break


def test_training_feeds_the_level_and_renders_are_asked_for_one(tmp_path, capsys):
    """Two takes 30 dB apart: training reaches the level input's weights, validation tells each chunk its own
    level, the checkpoint keeps the data's level, and `render --level` folds the level asked for. (Whether a
    trained model renders at the level asked is measured in docs/MEASUREMENTS.md, not here.)"""
    from soundalike.evaluate import evaluate_nll

    root = _two_level_dataset(tmp_path)
    sets = tiny_overrides(root, tmp_path, **{"model.level_input": "true", "train.max_steps": 40,
                                             "train.sample_count": 0, "train.val_every": 40,
                                             "train.ckpt_every": 40, "train.amp": "false"})
    cfg = load_config(ROOT / "configs" / "demo.yaml", sets)
    trainer = Trainer(cfg, device="cpu")
    trainer.fit()
    ckpt = tmp_path / "tiny" / "checkpoints" / "latest.pt"
    ck = load_checkpoint(ckpt)
    assert ck["model_kwargs"]["level_input"] is True and ck["config"]["model"]["level_input"] is True
    assert float(ck["model"]["level_default"]) == pytest.approx(trainer.train_set.level_db, abs=1e-4)
    assert ck["model"]["level_proj.weight"].abs().min() > 0  # every weight of it was trained
    from soundalike.export import export

    shared = load_checkpoint(export(ckpt, tmp_path / "shared", clips=0, evaluate=False))
    assert shared["model_kwargs"]["level_input"] is True
    assert torch.equal(shared["model"]["level_default"], ck["model"]["level_default"])
    # every checkpoint records its train split's level (what `--hold-level` holds by default), and so does an export
    assert ck["data_level_db"] == shared["data_level_db"] == round(trainer.train_set.level_db, 3)

    model, valid = trainer.model.eval(), trainer.valid_set
    own = evaluate_nll(model, valid, 8, 64, torch.device("cpu"))["bits"]
    told = valid.window_levels
    valid.window_levels = lambda chunks, pos: told(chunks, pos) + 20  # told 20 dB too loud
    assert evaluate_nll(model, valid, 8, 64, torch.device("cpu"))["bits"] != own

    # A level input 100 times as strong as 40 steps made it, so that the levels asked for below change samples.
    ck["model"]["level_proj.weight"] *= 100
    loud = tmp_path / "loud.pt"
    save_checkpoint(loud, without_training_state(ck))
    tracks = {}
    for level in (-45.0, -15.0, None):
        folder = tmp_path / f"at{level}"
        asked = [] if level is None else ["--level", str(level)]
        assert main(["--ckpt", str(loud), "--seconds", "0.05", "--count", "2", "--seed", "5", *asked,
                     "--out", str(folder)], command="render") == 0
        info = json.loads((folder / "render.json").read_text())
        assert info["level"] == (round(trainer.train_set.level_db, 2) if level is None else level)
        tracks[level] = sf.read(folder / "track-00.wav")[0]
    assert not np.array_equal(tracks[-45.0], tracks[-15.0])
    # The radio asks for a level the same way (`radio --level`).
    from soundalike.station import KeepAlive, Station

    station = Station(loud, KeepAlive(1.0, 1.0, enabled=False), seed=5, level=-45.0, block_seconds=0.01)
    assert station.describe()["level"] == -45.0
    assert Station(loud, KeepAlive(1.0, 1.0, enabled=False), seed=5).describe()["level"] == \
        round(trainer.train_set.level_db, 2)
    capsys.readouterr()
    assert main(["--ckpt", str(ckpt), "--seconds", "1", "--level", "3", "--out", str(tmp_path / "bad")],
                command="render") == 2
    assert "--level: expected a level in dBFS from -80 to 0, got 3" in capsys.readouterr().err


def test_render_level_needs_a_level_input_and_init_from_may_add_one(tiny_dataset, tmp_path, capsys):
    sets = tiny_overrides(tiny_dataset, tmp_path, **{"train.max_steps": 5, "train.sample_count": 0})
    cfg = load_config(ROOT / "configs" / "demo.yaml", sets)
    Trainer(cfg, device="cpu").fit()
    ckpt = tmp_path / "tiny" / "checkpoints" / "latest.pt"
    capsys.readouterr()
    assert main(["--ckpt", str(ckpt), "--seconds", "0.1", "--level", "-20", "--out", str(tmp_path / "r")],
                command="render") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained without a level input (model.level_input: true" in err
    from soundalike.station import KeepAlive, Station

    with pytest.raises(UserError, match="trained without a level input"):
        Station(ckpt, KeepAlive(1.0, 1.0, enabled=False), level=-20.0)

    cfg2 = load_config(ROOT / "configs" / "demo.yaml", [*sets, "name=cond", "model.level_input=true"])
    trainer = Trainer(cfg2, device="cpu", init_from=str(ckpt))
    before = load_checkpoint(ckpt)["model"]
    for key, value in before.items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    assert not trainer.model.level_proj.weight.any()
    assert float(trainer.model.level_default) == pytest.approx(trainer.train_set.level_db, abs=1e-4)
    # The other way round is refused: the level input's weights would be dropped.
    trainer.fit()
    capsys.readouterr()
    assert main(["--config", str(ROOT / "configs" / "demo.yaml"), *[a for s in sets for a in ("--set", s)],
                 "--name", "back", "--init-from", str(tmp_path / "cond" / "checkpoints" / "latest.pt")],
                command="train") == 2
    assert "model.level_input is True there, False here" in capsys.readouterr().err


def test_level_augment_plays_each_chunk_quieter_and_says_so(tmp_path):
    root = _two_level_dataset(tmp_path)
    q = Quantizer("mulaw", 256, 0.85)
    ds = AudioDataset(root, q, "train")
    plain = TBPTTLoader(ds, 4, 512, 8, seed=2, with_levels=True)
    fast = TBPTTLoader(ds, 4, 512, 8, seed=2, with_levels=True, gain_db=12.0)
    slow = ReferenceTBPTTLoader(ds, 4, 512, 8, seed=2, with_levels=True, gain_db=12.0)
    gains, saved, rest = [], None, []
    for step in range(40):
        p, f, r = next(plain), next(fast), next(slow)
        assert torch.equal(f.x, r.x) and torch.equal(f.level, r.level) and torch.equal(f.reset, r.reset)
        g = fast._gain.copy()
        assert ((-12 <= g) & (g <= 0)).all()
        if step and not p.reset.any():
            assert np.array_equal(g, gains[-1])  # one gain per chunk
        gains.append(g)
        scaled = q.quantize(q.dequantize(p.x.numpy()) * 10 ** (g[:, None] / 20))
        assert np.array_equal(f.x.numpy(), scaled)  # the same windows, quieter
        np.testing.assert_allclose(f.level.numpy(), p.level.numpy() + g, atol=1e-4)
        if step == 20:
            saved = fast.state_dict()
        elif 20 < step <= 25:
            rest.append(f)
    assert len({round(float(x), 6) for x in np.concatenate(gains)}) > 8
    again = TBPTTLoader(ds, 4, 512, 8, seed=2, with_levels=True, gain_db=12.0)
    again.load_state_dict(saved)
    for want in rest:
        got = next(again)
        assert torch.equal(got.x, want.x) and torch.equal(got.level, want.level)
    # A state written without the augmentation is not resumed with it: the loader says what changed.
    with pytest.raises(UserError, match="gain_db"):
        TBPTTLoader(ds, 4, 512, 8, seed=2, with_levels=True, gain_db=12.0).load_state_dict(plain.state_dict())


def test_level_augment_needs_a_level_input(capsys):
    with pytest.raises(UserError, match="train.level_augment: needs model.level_input: true"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.level_augment=6"])
    with pytest.raises(UserError, match="train.level_augment: must be between 0 and 40 dB"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.level_augment=-1", "model.level_input=true"])
    assert load_config(ROOT / "configs" / "demo.yaml", ["train.level_augment=6", "model.level_input=true"]
                       ).train.level_augment == 6.0


def test_level_hold_integrates_the_error_within_its_bounds():
    from soundalike.loudness import (
        HOLD_CAP,
        HOLD_ERROR_DB,
        HOLD_GAIN,
        HOLD_MAX,
        HOLD_RATE,
        HOLD_TAU_S,
        LevelHold,
        energy_db,
    )

    amplitudes = np.linspace(-1, 1, 256)
    hold = LevelHold(-20.0, 4, 16000, amplitudes)
    assert hold.block == 1024 and not hold.bias().any()  # no tilt before any audio
    # four streams: 10 dB under, at, and 10 dB over the level, and silent, for 1 s
    rms = np.append(10 ** (np.array([-30.0, -20.0, -10.0]) / 20), 0.0)
    updates = []
    for _ in range(16000 // 1000):  # 1,000 samples at a time, cut where the hold's blocks end
        n = 1000
        while n:
            k = min(n, hold.due())
            updates.append(hold.update(np.ones((4, k)) * rms[:, None]))
            n -= k
    assert sum(updates) == 16000 // 1024 and hold.due() == 1024 - 16000 % 1024  # updated once per whole block
    s, i = hold.strength, hold.integral
    assert s[0] > 0 > s[2] and abs(s[1]) < 1e-9
    # the level read starts at the level asked and averages over about a second: under 10 dB of error on average
    limit = HOLD_RATE * HOLD_ERROR_DB
    assert 0.1 * limit < i[0] < limit and -limit < i[2] < -0.1 * limit
    # the strength: the integral plus the proportional part of the last error, the error clipped (silence: 60 dB)
    error = np.clip(-20.0 - energy_db(hold.energy, 1.0), -HOLD_ERROR_DB, HOLD_ERROR_DB)
    assert 0 < error[0] < error[3] < HOLD_ERROR_DB
    np.testing.assert_allclose(s, i + HOLD_GAIN * error, atol=1e-12)
    quiet = LevelHold(-20.0, 1, 16000, amplitudes)
    for _ in range(40):  # 2.6 s of silence: the level read falls past -30 dB, the dB error acted on stays 10 dB
        quiet.update(np.zeros((1, quiet.block)))
    assert energy_db(quiet.energy, 1.0)[0] < -20 - HOLD_ERROR_DB
    # the integral's error is linear in the energy: 10 / ln 10 (1 - E / P), E the energy read, P the level's
    a = np.exp(-1024 / 16000 / HOLD_TAU_S)
    linear = 10 / np.log(10) * (1 - a ** np.arange(1, 41))
    assert quiet.integral[0] == pytest.approx(HOLD_RATE * 1024 / 16000 * linear.sum(), rel=1e-9)
    assert quiet.strength[0] == pytest.approx(quiet.integral[0] + HOLD_GAIN * HOLD_ERROR_DB)
    bias = hold.bias().numpy()
    assert bias.shape == (4, 256) and bias.dtype == np.float32
    np.testing.assert_allclose(bias[0], s[0] * np.minimum(amplitudes ** 2, HOLD_CAP), rtol=1e-6)
    # an emphasized model's hold: the positive strengths tilt the emphasized amplitude, the negative ones the heard
    emphasized = LevelHold(-20.0, 4, 16000, amplitudes, decay=0.85)
    emphasized.load_state(hold.state())
    tilt = emphasized.controls()
    np.testing.assert_array_equal(tilt["bias"].numpy()[0], bias[0])
    assert not tilt["bias"].numpy()[2].any() and tilt["pull"].dtype == torch.float32
    np.testing.assert_array_equal(tilt["pull"].numpy(), np.minimum(s, 0).astype(np.float32))
    assert set(hold.controls()) == {"bias"} and np.array_equal(hold.controls()["bias"], hold.bias())

    class Recorder:  # what `start` asks of a sampler
        def __init__(self):
            self.calls = []

        def set_heard(self, *args):
            self.calls.append(("heard", args))

        def set_controls(self, **kw):
            self.calls.append(("controls", sorted(kw)))

    plain, heard = Recorder(), Recorder()
    hold.start(plain, np.zeros(4))
    emphasized.start(heard, np.full(4, 0.2))
    assert plain.calls == [("controls", ["bias"])]
    (_, (amp, decay, cap, echo)), controls_set = heard.calls
    assert decay == 0.85 and cap == math.inf and np.array_equal(amp, amplitudes) and echo[0] == 0.2
    assert controls_set == ("controls", ["bias", "pull"])  # the heard tilt toward silence has no cap
    with pytest.raises(AssertionError, match="more audio than the hold's block"):
        hold.update(np.zeros((4, hold.due() + 1)))
    for _ in range(1000):  # silence for long: the integral and the strength stop at their bound
        hold.update(np.zeros((4, hold.due())))
    assert np.allclose(hold.strength, HOLD_MAX) and np.allclose(hold.integral, HOLD_MAX)
    hold.update(np.full((4, 100), 0.5))  # a part of a block, kept for the next update
    again = LevelHold(-20.0, 4, 16000, amplitudes)
    again.load_state(hold.state())
    for name in ("strength", "integral", "energy", "pending"):
        assert np.array_equal(getattr(again, name), getattr(hold, name)), name
    old = {k: v for k, v in hold.state().items() if k not in ("integral", "pending")}  # a state saved before them
    again.load_state(old)
    assert np.array_equal(again.integral, hold.strength) and again.due() == again.block
    again.load_state(hold.state())
    assert again.due() == 1024 - 100


def test_level_hold_settles_the_mean_energy_of_a_swinging_stream_at_the_level():
    """A stream whose level swings 6 dB either way every 3 s, around a level the tilt moves (0.2 dB per unit of
    strength), held at -20 dBFS for two minutes: its mean energy, the level of the whole render, settles at
    -20 dB, its mean dB over 3 dB under it (an integral of the dB error held this stream 1.1 dB too loud)."""
    from soundalike.loudness import LevelHold

    hold = LevelHold(-20.0, 1, 16000, np.linspace(-1, 1, 256))
    energies = []
    for k in range(round(120 / 0.064)):
        swing = 6.0 if (k * 0.064 // 3.0) % 2 else -6.0
        x = np.full((1, hold.block), 10 ** ((-30.0 + 0.2 * hold.strength[0] + swing) / 20))
        energies.append(np.mean(np.square(x)))
        hold.update(x)
    second_minute = np.array(energies[len(energies) // 2:])
    assert abs(10 * np.log10(second_minute.mean()) + 20) < 0.2
    assert np.mean(10 * np.log10(second_minute)) < -23


def test_the_hold_is_on_by_default_where_the_model_allows_it():
    """`--hold-level`'s values: not given, the training data's level for a softmax model whose checkpoint records
    it, else no hold (no error); "off" none; given a level or "data", errors where the model cannot be held."""
    from soundalike.loudness import hold_target, parse_hold
    from soundalike.models.samplernn import SampleRNN

    softmax = SampleRNN(frame_sizes=[4, 2], dim=16, emb_size=8, q_levels=256)
    sixteen = SampleRNN(frame_sizes=[4, 2], dim=16, emb_size=8, q_levels=65536, output="coarse_fine")
    recorded, older = {"data_level_db": -17.234}, {}
    assert parse_hold(None) == "auto" and parse_hold("off") is None and parse_hold("data") == "data"
    assert hold_target("auto", recorded, softmax, "m.pt") == -17.23
    assert hold_target("auto", older, softmax, "m.pt") is None
    assert hold_target("auto", recorded, sixteen, "m.pt") is None
    assert hold_target(None, recorded, softmax, "m.pt") is None
    with pytest.raises(UserError, match="coarse_fine head"):
        hold_target("data", recorded, sixteen, "m.pt")
    with pytest.raises(UserError, match="does not record"):
        hold_target("data", older, softmax, "m.pt")
