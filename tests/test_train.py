import html
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from soundalike.audio import write_wav
from soundalike.callbacks import PreviewClips
from soundalike.checkpoint import load_checkpoint, save_checkpoint
from soundalike.cli import main
from soundalike.config import load_config
from soundalike.emphasis import decode
from soundalike.errors import UserError
from soundalike.evaluate import evaluate_checkpoint
from soundalike.quantize import Quantizer
from soundalike.sampling import generate
from soundalike.train import Trainer
from tests.conftest import ROOT


def tiny_overrides(dataset, run_root, **extra) -> list[str]:
    values = {
        "data.path": str(dataset), "run_root": str(run_root), "name": "tiny",
        "model.frame_sizes": "[4, 2]", "model.dim": 32, "model.emb_size": 16, "model.q_levels": None,
        "train.batch_size": 4, "train.seq_len": 64, "train.val_every": 10, "train.log_every": 5,
        "train.ckpt_every": 10, "train.val_batch_size": 8, "train.sample_count": 1,
        "train.sample_seconds": 0.02, "train.lr": 0.01, "train.threads": 2,
        "train.max_time": '""',  # steps, not demo.yaml's 10 minutes, end these runs (on a busy machine too)
    }
    values.pop("model.q_levels")
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "latest.pt")["model"]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_learns_and_writes_the_run_folder(tiny_dataset, tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path, **{
        "train.max_steps": 60, "train.batch_size": 16, "train.seq_len": 128}))
    Trainer(cfg, device="cpu").fit()
    run = tmp_path / "tiny"
    rows = read_metrics(run)
    train = [r["train_bits"] for r in rows if "train_bits" in r]
    val = [r["val_bits"] for r in rows if "val_bits" in r]
    assert train[-1] < train[0] - 1.0, train
    assert val[-1] < val[0], val
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()
    for name in ("latest", "best", "step-00000060"):
        assert (run / "checkpoints" / f"{name}.pt").is_file()
    clips = sorted((run / "samples").glob("step-*/sample-00.wav"))
    assert len(clips) == 6
    meta = json.loads(clips[-1].with_suffix(".json").read_text())
    assert meta["step"] == 60
    # the checkpoint alone evaluates, on the test split, in bits per sample
    r = evaluate_checkpoint(str(run / "checkpoints" / "best.pt"), "test")
    assert 0 < r["bits"] < r["marginal_entropy_bits"]
    # and with the weights render --weights bf16 / int8 uses: other models, costing little
    for weights in ("bf16", "int8"):
        b = evaluate_checkpoint(str(run / "checkpoints" / "best.pt"), "test", weights=weights)
        assert b["weights"] == weights and b["bits"] != r["bits"] and abs(b["bits"] - r["bits"]) < 0.05


def test_pre_emphasis_reaches_the_checkpoint_and_the_preview_clips_are_deemphasized(tiny_dataset, tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path, **{
        "train.sample_seconds": 0.1}))
    trainer = Trainer(cfg, device="cpu")
    payload = trainer._training_state()
    assert payload["quantizer"] == {"kind": "mulaw", "levels": 256, "pre_emphasis": 0.85}
    assert payload["config"]["data"]["pre_emphasis"] == 0.85
    assert trainer.train_set.cache_path.name.startswith("train-mulaw256-e0.85-")
    PreviewClips()(trainer)
    clip = sf.read(tmp_path / "tiny" / "samples" / "step-00000000" / "sample-00.wav", dtype="int16")[0]
    levels = generate(trainer.model, len(clip), batch=1, temperature=cfg.train.sample_temperature,
                      seed=cfg.train.seed).numpy()
    for quantizer, same in ((trainer.quantizer, True), (Quantizer("mulaw", 256), False)):
        write_wav(tmp_path / "expected.wav", decode(levels, quantizer)[0][0], 8000)
        assert np.array_equal(clip, sf.read(tmp_path / "expected.wav", dtype="int16")[0]) == same
    # evaluate reads the coefficient from the checkpoint: it measures the model on the emphasized data
    save_checkpoint(tmp_path / "step0.pt", payload)
    evaluate_checkpoint(str(tmp_path / "step0.pt"), "test")
    assert [p.name[:20] for p in (tiny_dataset / "cache").glob("test-*e0.85*")] == ["test-mulaw256-e0.85-"]


def test_numbered_checkpoints_keep_the_last_k(tiny_dataset, tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path, **{
        "train.max_steps": 40, "train.ckpt_every": 5, "train.keep_last": 2, "train.sample_count": 0}))
    Trainer(cfg, device="cpu").fit()
    names = sorted(p.name for p in (tmp_path / "tiny" / "checkpoints").glob("step-*.pt"))
    assert names == ["step-00000035.pt", "step-00000040.pt"]


def _train_cmd(dataset, run_root, steps):
    sets = tiny_overrides(dataset, run_root, **{"train.val_every": 4, "train.sample_count": 0})
    return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "demo.yaml"),
            "--max-steps", str(steps), *[a for s in sets for a in ("--set", s)]]


def test_kill_9_and_resume_gives_identical_weights(tiny_dataset, tmp_path):
    steps = 120
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_train_cmd(tiny_dataset, straight, steps), check=True, capture_output=True)

    proc = subprocess.Popen(_train_cmd(tiny_dataset, killed, steps), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latest = killed / "tiny" / "checkpoints" / "latest.pt"
    deadline = time.time() + 120
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let it run past the checkpoint, so the kill loses some steps
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    interrupted_at = load_checkpoint(latest)["step"]
    assert 0 < interrupted_at < steps

    subprocess.run(_train_cmd(tiny_dataset, killed, steps), check=True, capture_output=True)
    a, b = weights(straight / "tiny"), weights(killed / "tiny")
    assert load_checkpoint(latest)["step"] == steps
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert "resumed" in (killed / "tiny" / "train.log").read_text()


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path, capsys,
                                                                         monkeypatch):
    sets = tiny_overrides(tiny_dataset, tmp_path, **{"train.sample_count": 0, "train.max_steps": 10})
    argv = ["--config", str(ROOT / "configs" / "demo.yaml"), *[a for s in sets for a in ("--set", s)]]
    assert main(argv, command="train") == 0
    latest = tmp_path / "tiny" / "checkpoints" / "latest.pt"
    before = latest.read_bytes()

    from soundalike.models.samplernn.model import SampleMLP
    real_features = SampleMLP.features
    monkeypatch.setattr(SampleMLP, "features", lambda self, h: real_features(self, h) * float("nan"))
    assert main([*argv, "--max-steps", "20"], command="train") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("soundalike train: error: loss became nan at step 11")
    assert "Traceback" not in "\n".join(err)
    assert latest.read_bytes() == before


def test_resuming_with_a_different_model_is_refused(tiny_dataset, tmp_path, capsys):
    sets = tiny_overrides(tiny_dataset, tmp_path, **{"train.sample_count": 0, "train.max_steps": 5})
    argv = ["--config", str(ROOT / "configs" / "demo.yaml"), *[a for s in sets for a in ("--set", s)]]
    assert main(argv, command="train") == 0
    assert main([*argv, "--set", "model.dim=48"], command="train") == 2
    assert "different model section" in capsys.readouterr().err


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    code = main(["--config", str(ROOT / "configs" / "demo.yaml"), "--set", f"data.path={tmp_path}/none",
                 "--set", f"run_root={tmp_path}"], command="train")
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_ddp_two_processes_with_gloo_stay_in_sync(tiny_dataset, tmp_path):
    sets = tiny_overrides(tiny_dataset, tmp_path, **{"train.sample_count": 0, "train.max_steps": 20,
                                                     "train.threads": 1})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "demo.yaml"),
           *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "tiny"
    log = (run / "train.log").read_text()
    assert log.count("ranks in sync") == 2  # checked at each validation (steps 10 and 20)
    # the all-reduced validation NLL equals a single-process evaluation of the saved weights
    val = [r["val_bits"] for r in read_metrics(run) if "val_bits" in r][-1]
    single = evaluate_checkpoint(str(run / "checkpoints" / "latest.pt"), "valid")["bits"]
    assert single == pytest.approx(val, rel=1e-3)


def test_every_preview_clip_renders_longer_from_its_own_snapshot_and_favourites_are_never_pruned(
        tiny_dataset, tmp_path, monkeypatch):
    from soundalike.checkpoint import TRAINING_STATE
    from soundalike.run_folder import RunFolder, hour_command

    def fit(steps):
        Trainer(load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path, **{
            "train.max_steps": steps, "train.ckpt_every": 1000, "train.keep_snapshots": 2,
            "train.sample_count": 2, "train.sample_seconds": 0.1})), device="cpu").fit()

    fit(30)
    run = RunFolder(tmp_path / "tiny")
    assert [p.name for p in run.numbered_snapshots()] == ["step-00000020.pt", "step-00000030.pt"]
    snap = torch.load(run.snapshot(30), weights_only=True)
    assert snap["step"] == 30 and not set(TRAINING_STATE) & set(snap)
    assert run.snapshot(30).stat().st_size < 0.5 * run.checkpoint("latest").stat().st_size  # no Adam moments
    meta = json.loads((run.samples_at(20) / "sample-01.json").read_text())
    assert meta["checkpoint"] == str(run.snapshot(20))
    # The gallery shows the command rendering an hour from each checkpoint; its tracks begin with the clips.
    assert html.escape(hour_command(run, 30)) in run.page.read_text()
    cmd = shlex.split(hour_command(run, 20, seconds=0.2))
    assert cmd[:2] == ["soundalike", "render"] and "--seed" in cmd
    monkeypatch.chdir(tmp_path)
    assert main([*cmd[1:], "--out", str(tmp_path / "hour")]) == 0
    for i in range(2):
        clip = sf.read(run.samples_at(20) / f"sample-{i:02d}.wav", dtype="int16")[0]
        track = sf.read(tmp_path / "hour" / f"track-{i:02d}.wav", dtype="int16")[0]
        # longer than the level hold's first block (64 ms): the command renders free, as the clips are
        assert len(track) == 1600 > len(clip) > 0.064 * 8000 and np.array_equal(track[:len(clip)], clip), i
        assert len(set(clip.tolist())) > 4  # not silence or a constant

    assert main(["keep", str(run.path), "20"]) == 0
    fit(50)
    assert [p.name for p in run.numbered_snapshots()] == ["step-00000020.pt", "step-00000040.pt",
                                                           "step-00000050.pt"]
    assert "★" in run.page.read_text()
    assert main(["keep", str(run.path), "30"]) == 2  # pruned before it was marked


def test_tensorboard_gets_the_preview_clips_as_audio(tiny_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path, **{
        "train.max_steps": 10}))
    Trainer(cfg, device="cpu").fit()
    events = EventAccumulator(str(tmp_path / "tiny" / "tensorboard"), size_guidance={"audio": 0})
    events.Reload()
    assert "samples/sample-00" in events.Tags()["audio"]


def test_init_from_starts_a_new_run_from_another_models_weights(tiny_dataset, tmp_path, capsys):
    from soundalike.checkpoint import model_payload, save_checkpoint
    from soundalike.export import export
    from soundalike.models import from_config
    from soundalike.quantize import Quantizer

    sets = tiny_overrides(tiny_dataset, tmp_path, **{"train.sample_count": 0, "train.max_steps": 5,
                                                     "name": "new"})
    cfg = load_config(ROOT / "configs" / "demo.yaml", sets)
    torch.manual_seed(1)
    base = from_config(cfg)  # another artist's model: trained elsewhere, on other data
    quantizer = Quantizer(cfg.data.quantization, cfg.data.q_levels, cfg.data.pre_emphasis)
    payload = model_payload(base, quantizer, 16000, {**cfg.to_dict(), "data": {"path": "other"}})
    save_checkpoint(tmp_path / "base.pt", {**payload, "step": 1234})
    out = export(tmp_path / "base.pt", tmp_path / "shared", clips=0, evaluate=False)
    trainer = Trainer(cfg, device="cpu", init_from=str(out))
    for key, value in base.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    trainer.fit()
    ck = load_checkpoint(tmp_path / "new" / "checkpoints" / "latest.pt")
    assert ck["init_from"] == {"path": str(out.resolve()), "step": 1234, "sample_rate": 16000, "data": "other"}
    assert {int(s["step"]) for s in ck["optimizer"]["state"].values()} == {5}  # a fresh optimizer
    assert "initialized the weights from" in (tmp_path / "new" / "train.log").read_text()

    argv = ["--config", str(ROOT / "configs" / "demo.yaml"), *[a for s in sets for a in ("--set", s)],
            "--init-from", str(out)]
    capsys.readouterr()
    assert main([*argv, "--name", "other", "--set", "model.dim=48"], command="train") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.dim is 32 there, 48 here" in err
    assert main([*argv, "--name", "other", "--set", "data.q_levels=128"], command="train") == 2
    assert "quantizes to mulaw 256 with pre-emphasis 0.85, this config to mulaw 128 with" in capsys.readouterr().err
    assert main([*argv, "--name", "other", "--set", "data.pre_emphasis=0"], command="train") == 2
    assert "with pre-emphasis 0.85, this config to mulaw 256 (data" in capsys.readouterr().err


def test_a_cpu_time_budget_ends_training_by_what_this_process_used(tiny_dataset, tmp_path, monkeypatch):
    """train.max_cpu_time counts this process's CPU seconds, not the wall clock: a run on a shared machine gets
    the budget it was given. The CPU clock is faked to read 1 s per step done, so a 5 s budget is 5 steps."""
    import soundalike.train as train_module

    cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path, **{
        "train.max_cpu_time": "5s", "train.val_every": 1000, "train.sample_count": 0}))
    trainer = Trainer(cfg, device="cpu")
    monkeypatch.setattr(train_module.time, "process_time", lambda: float(trainer.step))
    trainer.fit()
    assert "reached max_cpu_time=5s" in (tmp_path / "tiny" / "train.log").read_text()
    assert int(load_checkpoint(tmp_path / "tiny" / "checkpoints" / "latest.pt")["step"]) == 5


def test_input_noise_moves_each_window_by_its_own_spread():
    from soundalike.train import noisy_inputs
    x = torch.full((400, 2000), 128, dtype=torch.long)
    y = noisy_inputs(x, 256, 4.0, seed=3)
    spread = (y - x).double().std(dim=1)
    assert spread.max() < 4.3 and spread.min() < 0.3  # each row's standard deviation drawn from [0, 4]
    assert spread.mean() == pytest.approx(2.0, abs=0.2)
    assert (y - x).double().mean().abs() < 0.01  # no offset
    assert torch.equal(noisy_inputs(x, 256, 4.0, 3), y) and not torch.equal(noisy_inputs(x, 256, 4.0, 4), y)
    wide = noisy_inputs(torch.full((400, 2000), 32768, dtype=torch.long), 65536, 4.0, 3)
    assert (wide - 32768).double().std(dim=1).mean() == pytest.approx(512, rel=0.1)  # in 256-level units
    edge = noisy_inputs(torch.zeros(4, 100, dtype=torch.long), 256, 8.0, seed=1)
    assert edge.min() == 0 and edge.max() > 0  # clamped to the levels


def test_input_noise_scores_clean_targets_and_resumes_exactly(tiny_dataset, tmp_path):
    def trained(root, steps, noise=3.0):
        cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, root, **{
            "train.max_steps": steps, "train.sample_count": 0, "train.input_noise": noise}))
        Trainer(cfg, device="cpu").fit()
        return weights(root / "tiny")

    straight = trained(tmp_path / "straight", 20)
    trained(tmp_path / "halves", 10)
    resumed = trained(tmp_path / "halves", 20)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    clean = trained(tmp_path / "clean", 20, noise=0.0)
    assert any(not torch.equal(straight[k], clean[k]) for k in straight)

    cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path / "spy", **{
        "train.sample_count": 0, "train.input_noise": 3.0}))
    trainer = Trainer(cfg, device="cpu")
    calls = []
    model = trainer.net
    trainer.net = lambda x, *a, **kw: calls.append((x, kw)) or model(x, *a, **kw)
    window = trainer.loader.state_dict()
    trainer.train_step()
    trainer.loader.load_state_dict(window)
    x = next(trainer.loader).x
    noisy, kw = calls[0]
    assert torch.equal(kw["targets"], x[:, model.lookback:]) and not torch.equal(noisy, x)


def test_weight_average_follows_the_moving_average_with_a_short_start():
    from soundalike.averaging import WeightAverage
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.9)
    expect = model.weight.detach().clone()
    for n in range(30):
        with torch.no_grad():
            model.weight.add_(torch.randn(2, 3))
        average.update(model)
        d = min(0.9, (1 + n) / (10 + n))
        expect = d * expect + (1 - d) * model.weight.detach()
    torch.testing.assert_close(average.model.weight, expect)
    assert not torch.equal(average.model.weight, model.weight) and not average.model.weight.requires_grad


def test_averaged_weights_are_the_checkpoints_model_and_resume_exactly(tiny_dataset, tmp_path):
    def trained(root, steps, **extra):
        cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, root, **{
            "train.max_steps": steps, "train.sample_count": 1, "train.ema": 0.95, **extra}))
        Trainer(cfg, device="cpu").fit()
        return load_checkpoint(root / "tiny" / "checkpoints" / "latest.pt")

    straight = trained(tmp_path / "straight", 20)
    trained(tmp_path / "halves", 10)
    resumed = trained(tmp_path / "halves", 20)
    for part in ("model", "trained_model"):
        for key in straight[part]:
            assert torch.equal(straight[part][key], resumed[part][key]), (part, key)
    assert resumed["average_updates"] == 20
    assert any(not torch.equal(straight["model"][k], straight["trained_model"][k]) for k in straight["model"])
    # validation measured the average: what evaluate reads from the checkpoint
    run = tmp_path / "straight" / "tiny"
    logged = next(r for r in read_metrics(run) if "val_bits" in r and r["step"] == 20)["val_bits"]
    assert evaluate_checkpoint(str(run / "checkpoints" / "latest.pt"), "valid")["bits"] == pytest.approx(logged)
    # the preview snapshot holds the average and nothing of the training state
    snap = load_checkpoint(max((run / "snapshots").glob("*.pt")))
    assert "trained_model" not in snap and all(torch.equal(snap["model"][k], straight["model"][k])
                                               for k in snap["model"])
    # pruned weights stay exactly zero in the average
    pruned = trained(tmp_path / "pruned", 20, **{"sparsity.target": 0.5, "sparsity.start": 2, "sparsity.end": 10,
                                                  "sparsity.every": 2})
    from soundalike.models import build
    from soundalike.sparsity import prunable
    matrices = {}
    for part in ("model", "trained_model"):
        model = build(pruned["family"], pruned["model_kwargs"])
        model.load_state_dict(pruned[part])
        matrices[part] = {name: getattr(m, attr) == 0 for name, (m, attr, _) in prunable(model).items()}
    for name, zeros in matrices["model"].items():
        assert torch.equal(zeros, matrices["trained_model"][name]), name
        assert 0.45 < float(zeros.float().mean()) < 0.55, name


def test_lr_schedule_warms_up_holds_and_decays_on_a_half_cosine_to_the_end(tiny_dataset, tmp_path, capsys):
    from soundalike.config import TrainConfig
    from soundalike.train import lr_factor

    t = TrainConfig(warmup_steps=4, max_steps=100, decay_steps=20, decay_to=0.1)
    assert [lr_factor(s, t) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(79, t) == lr_factor(80, t) == 1.0  # the last 20 updates (81..100) decay
    assert lr_factor(90, t) == pytest.approx(0.55)  # half way: the mean of 1 and 0.1
    factors = [lr_factor(s, t) for s in range(80, 100)]
    assert all(a > b for a, b in itertools.pairwise(factors)) and 0.1 < factors[-1] < 0.11
    assert lr_factor(150, t) == pytest.approx(0.1)  # a run taken past max_steps stays at the floor
    assert lr_factor(99, TrainConfig(max_steps=100)) == 1.0

    def trained(root, steps, decay=10):
        cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, root, **{
            "train.max_steps": steps, "train.sample_count": 0, "train.decay_steps": decay, "train.log_every": 1,
            "train.ema": 0}))
        Trainer(cfg, device="cpu").fit()
        return root / "tiny"

    straight = trained(tmp_path / "straight", 20)
    logged = [r["lr"] for r in read_metrics(straight) if "lr" in r]
    assert logged[:10] == [0.01] * 10 and logged[10:] == pytest.approx(
        [0.01 * 0.5 * (1 + np.cos(np.pi * k / 10)) for k in range(1, 11)])  # logged after each update
    # 10 steps at the constant LR, resumed with the decay over the next 10: the same weights as straight
    trained(tmp_path / "halves", 10, decay=0)
    resumed = trained(tmp_path / "halves", 20)
    for key, value in weights(straight).items():
        assert torch.equal(value, weights(resumed)[key]), key
    for bad, message in ((["train.decay_steps=30", "train.max_steps=20"], "train.decay_steps"),
                         (["train.decay_steps=10", "train.max_steps=0"], "train.decay_steps"),
                         (["train.decay_to=2"], "train.decay_to")):
        with pytest.raises(UserError, match=message):
            load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path, **dict(
                b.split("=") for b in bad)))
