"""Gradual block magnitude pruning (soundalike.sparsity): the schedule, the masks, training with it (the target
reached, pruned blocks staying zero, exact resume) and its config errors."""

import itertools

import pytest
import torch

from soundalike import sparsity
from soundalike.checkpoint import load_checkpoint
from soundalike.cli import main
from soundalike.config import load_config
from soundalike.models.samplernn import SampleRNN
from soundalike.sampling import kernel
from soundalike.train import Trainer
from tests.conftest import ROOT
from tests.test_train import tiny_overrides


def zero_block_fraction(w: torch.Tensor, block=(16, 1)) -> float:
    return float((sparsity.block_norms(w, list(block)) == 0).float().mean())


def test_the_schedule_rises_cubically_from_start_to_end_in_steps_of_every():
    cfg = sparsity.SparsityConfig(target=0.9, start=100, end=1100, every=100)
    assert sparsity.scheduled(cfg, 0) == sparsity.scheduled(cfg, 99) == 0
    assert sparsity.scheduled(cfg, 100) == 0  # the first update prunes nothing yet
    assert sparsity.scheduled(cfg, 600) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert sparsity.scheduled(cfg, 650) == sparsity.scheduled(cfg, 600)  # held between updates
    assert sparsity.scheduled(cfg, 1100) == sparsity.scheduled(cfg, 10 ** 6) == pytest.approx(0.9)
    steps = [sparsity.scheduled(cfg, s) for s in range(0, 1200, 100)]
    assert steps == sorted(steps)
    gains = [b - a for a, b in itertools.pairwise(steps[1:])]
    assert gains == sorted(gains, reverse=True)  # fast at first, slow near the target
    assert sparsity.scheduled(sparsity.SparsityConfig(), 10 ** 6) == 0  # target 0: off


@pytest.mark.parametrize("block", [[16, 1], [4, 8], [3, 5]])
def test_block_mask_zeroes_the_smallest_blocks_whole(block):
    torch.manual_seed(0)
    w = torch.randn(70, 45)  # not a multiple of any block: padded edge blocks
    mask = sparsity.block_mask(w, 0.6, block)
    norms = sparsity.block_norms(w, block)
    kept = sparsity.block_norms(w * mask, block) > 0
    assert kept.any(dim=1).all()  # every row of blocks keeps one: no output cut off from all inputs
    # magnitude: the smallest blocks went, but for the largest block of a row that would have lost all of them
    rescued = kept & (norms < norms[~kept].max())
    assert (kept.sum(dim=1)[rescued.any(dim=1)] == 1).all()
    assert (~kept).sum() == round(0.6 * norms.numel()) - rescued.sum()
    assert torch.equal((w * mask)[mask], w[mask])  # the rest untouched
    assert torch.equal(sparsity.block_norms(w * mask, block)[kept], norms[kept])  # whole blocks only


def test_prunable_matrices_of_samplernn():
    model = SampleRNN([4, 2], dim=32, emb_size=8, q_levels=256, n_rnn=2, rnn_type="lstm", skip_connections=True)
    names = set(sparsity.prunable(model))
    assert {"tiers.0.rnns.0.weight_ih_l0", "tiers.0.rnns.1.weight_hh_l0", "tiers.1.skip_proj.weight",
            "tiers.0.upsample.weight", "mlp.hidden.weight", "mlp.output.weight"} <= names
    # the input projections, the embedding and the sample-level input layer (folded into lookup tables) are not
    assert not any(n.startswith(("mlp.input", "mlp.embedding")) or "input_proj" in n for n in names)
    sparsity.prune(model, 0.75)
    for module, attr, _ in sparsity.prunable(model).values():
        assert zero_block_fraction(getattr(module, attr)) == 0.75  # through weight norm's v too


def test_training_prunes_to_the_target_and_the_stepper_stores_block_sparse_matrices(tiny_dataset, tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(tiny_dataset, tmp_path, **{
        "train.max_steps": 16, "train.sample_count": 0, "train.val_every": 1000, "model.dim": 48,
        "sparsity.target": 0.75,
        "sparsity.start": 2, "sparsity.end": 12, "sparsity.every": 2}))
    trainer = Trainer(cfg, device="cpu")
    trainer.fit()
    model = trainer.model
    for name, (module, attr, _) in sparsity.prunable(model).items():
        assert zero_block_fraction(getattr(module, attr)) == pytest.approx(0.75, abs=0.02), name
    # what the checkpoint holds is pruned too (the mask is its zeros), and the sampler reads it block-sparse
    ck = load_checkpoint(tmp_path / "tiny" / "checkpoints" / "latest.pt")
    assert sum(int((v == 0).sum()) for v in ck["model"].values()) > 0.5 * sum(
        module.weight.numel() if attr == "weight" else getattr(module, attr).numel()
        for module, attr, _ in sparsity.prunable(model).values())
    # evaluate reports the sparsity beside the NLL
    from soundalike.evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(str(tmp_path / "tiny" / "checkpoints" / "latest.pt"), "valid")
    assert r["zero_blocks"] == pytest.approx(0.75, abs=0.02) and r["bits"] > 0
    if kernel.load() is not None:
        from soundalike.sampling import Sampler

        stepper = Sampler(model.eval(), 1).stepper
        assert isinstance(stepper.w1, kernel.Blocks) and isinstance(stepper.tiers[0].w_up, kernel.Blocks)


def test_pruned_training_resumes_exactly(tiny_dataset, tmp_path):
    """Stopped in the middle of the schedule and resumed: the same weights (pruned blocks and all) as a run
    in one go; the masks come back from the checkpoint's zeros."""
    sets = {"train.sample_count": 0, "train.val_every": 1000, "sparsity.target": 0.5, "sparsity.start": 3,
            "sparsity.end": 15, "sparsity.every": 3}
    straight = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(
        tiny_dataset, tmp_path / "a", **sets, **{"train.max_steps": 18}))
    Trainer(straight, device="cpu").fit()
    for steps in (7, 18):
        cfg = load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(
            tiny_dataset, tmp_path / "b", **sets, **{"train.max_steps": steps}))
        Trainer(cfg, device="cpu").fit()
    a = load_checkpoint(tmp_path / "a" / "tiny" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "b" / "tiny" / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 18
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert sum(int((v == 0).sum()) for v in a["model"].values()) > 1000


@pytest.mark.parametrize("setting,message", [
    ("sparsity.target=1.0", "sparsity.target: must be at least 0 and below 1"),
    ("sparsity.target=high", "sparsity.target: expected a number"),
    ("sparsity.block=[16]", "sparsity.block: expected [rows, cols]"),
    ("sparsity.every=0", "sparsity.every: must be positive"),
    ("sparsity.shape=[16,1]", "sparsity.shape: unknown key"),
])
def test_bad_sparsity_settings_are_one_line_errors(tmp_path, capsys, setting, message):
    argv = ["--config", str(ROOT / "configs" / "demo.yaml"), "--set", f"run_root={tmp_path}", "--set",
            "sparsity.end=10", "--set", setting]
    assert main(argv, command="train") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
