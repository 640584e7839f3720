"""Where a render's DC offset comes from: the model's one-step bias, and what free-running does with it.

Teacher-forced on the validation split, the model predicts every sample from the true past; one draw per
position (the sampler's own rule, `Head.draw`, at each TEMPERATURE[:MIN_P] setting) minus the true sample,
averaged, is the model's **one-step bias** b: what it adds to the centre per step. Free-running from silence
(`--count` streams of `--seconds`, the fast sampler), the same model's output mean is the **render DC**. Audio
models predict the next sample from a past that is almost the same value (a process near a unit root), so a
per-step bias is not reported once but summed until the model's pull back to its idea of the centre balances
it; the ratio DC / b measures that gain. Everything is in the model's amplitude units (the dequantized levels,
before de-emphasis: with `data.pre_emphasis` a, the audio's DC is these figures / (1 - a)).

    python tools/dc_drift.py --ckpt runs/demo/checkpoints/best.pt --sampling 1.0 1.0:0.02 0.95
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from soundalike.checkpoint import build_model, load_checkpoint, quantizer_of
from soundalike.data import AudioDataset, eval_batches
from soundalike.models.heads import controls
from soundalike.sampling import generate


def settings(text: str) -> tuple[float, float]:
    temperature, _, min_p = text.partition(":")
    return float(temperature), float(min_p or 0)


@torch.no_grad()
def one_step_bias(model, dataset: AudioDataset, sampling: list[str], chunks: int, seq_len: int,
                  seed: int) -> dict:
    """Mean over the first `chunks` validation chunks of (draw - truth) per setting, and the truth's mean."""
    features = {}
    projection = model.mlp.output if hasattr(model, "mlp") else model.out
    hook = projection.register_forward_hook(lambda m, inputs, out: features.__setitem__("z", inputs[0]))
    values = torch.from_numpy(dataset.quantizer.dequantize(np.arange(dataset.quantizer.levels))).double()
    sums = {s: 0.0 for s in sampling}
    truth_sum, n = 0.0, 0
    gen = torch.Generator().manual_seed(seed)
    dataset.lengths = dataset.lengths[:chunks]
    state = None
    head = model.head
    for batch in eval_batches(dataset, chunks, seq_len, model.lookback):
        if state is not None and batch.reset.all():
            state = None
        params, state = model(batch.x, state, batch.reset)
        z = features["z"]
        target = batch.x[:, model.lookback:]
        mask = batch.mask.reshape(-1)
        flat_params = params.reshape(-1, params.shape[-1])[mask]
        flat_z = z.reshape(-1, z.shape[-1])[mask]
        truth = values[target.reshape(-1)[mask]]
        truth_sum += float(truth.sum())
        n += int(mask.sum())
        for s in sampling:
            temperature, min_p = settings(s)
            rows = flat_params.shape[0]
            c = controls(torch.full((rows,), temperature), torch.full((rows,), min_p))
            u = torch.rand(rows, head.noise_width, generator=gen, dtype=torch.float64)
            noise = (u if head.uniform else -torch.log(-torch.log(u.clamp_min(1e-300)))).float()
            drawn = head.draw(flat_params, flat_z, noise, c)
            sums[s] += float((values[drawn] - truth).sum())
    hook.remove()
    return {"truth_mean": truth_sum / n, "samples": n, "bias": {s: sums[s] / n for s in sampling}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--sampling", nargs="+", default=["1.0", "1.0:0.02"], help="TEMPERATURE[:MIN_P] settings")
    p.add_argument("--chunks", type=int, default=16, help="validation chunks teacher-forced")
    p.add_argument("--count", type=int, default=4, help="free-running streams per setting")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    ckpt = load_checkpoint(args.ckpt)
    model = build_model(ckpt).double()
    quantizer = quantizer_of(ckpt)
    dataset = AudioDataset(ckpt["config"]["data"]["path"], quantizer, "valid")
    forced = one_step_bias(model, dataset, args.sampling, args.chunks, ckpt["config"]["train"]["seq_len"],
                           args.seed)
    values = quantizer.dequantize(np.arange(quantizer.levels)).astype(np.float64)
    rate = int(ckpt["sample_rate"])
    rows = []
    for s in args.sampling:
        temperature, min_p = settings(s)
        levels = generate(model.float(), int(args.seconds * rate), batch=args.count, temperature=temperature,
                          seed=args.seed, min_p=min_p).numpy()
        audio = values[levels]
        second = audio[:, : audio.shape[1] // rate * rate].reshape(args.count, -1, rate).mean(axis=(0, 2))
        dc = float(audio.mean())
        b = forced["bias"][s]
        rows.append({"setting": s, "one_step_bias": round(b, 6), "render_dc": round(dc, 5),
                     "render_dc_per_second": [round(float(v), 4) for v in second],
                     "gain": round(dc / b, 1) if abs(b) > 1e-7 else None})
    print(json.dumps({"checkpoint": args.ckpt, "step": ckpt.get("step"), "head": model.head.kind,
                      "pre_emphasis": quantizer.pre_emphasis, "data_mean": round(forced["truth_mean"], 5),
                      "teacher_forced_samples": forced["samples"], "settings": rows}, indent=1))


if __name__ == "__main__":
    main()
