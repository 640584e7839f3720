"""What training does after each validation, besides saving checkpoints: a list of jobs the trainer calls in
order on rank 0 (`Trainer.after_validation`). Each takes the trainer; a failure of a convenience job (the
gallery) is logged, never fatal. A stop signal abandons them (they may take minutes: `train.fit`).

The preview clips of a step point at a snapshot of the weights that made them (written first), so every clip
can be rendered longer from its own weights, not only from whichever checkpoint survives."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import checkpoint as ckpt_io
from .atomic import write_json
from .run_folder import RunFolder

if TYPE_CHECKING:
    from .train import Trainer

GALLERY_EVERY_S = 120  # the page redraws pictures; frequent validations need not redraw it each time
BAD_VERDICTS = ("noise", "silent", "stuck", "clipped", "crackle")


class Job(Protocol):
    def __call__(self, trainer: Trainer, force: bool = False) -> None: ...


class PreviewSnapshot:
    """Save snapshots/step-N.pt, the checkpoint without its training state, before the clips of step N are
    rendered from the same weights; keep the newest `train.keep_snapshots` and every favourite."""

    def __call__(self, trainer: Trainer, force: bool = False) -> None:
        t, run = trainer.cfg.train, trainer.run
        if t.sample_count < 1 or t.sample_seconds <= 0:
            return
        ckpt_io.save_checkpoint(run.snapshot(trainer.step), trainer.model_state())
        run.prune(run.numbered_snapshots(), t.keep_snapshots)


class PreviewClips:
    """Render `train.sample_count` short clips from the current weights into samples/step-N/, with their
    statistics in metrics.jsonl and a warning in the log for any that sounds broken."""

    def __call__(self, trainer: Trainer, force: bool = False) -> None:
        from .audio import write_wav
        from .emphasis import decode
        from .sampling import generate
        from .stats import clip_stats

        t, run, rate = trainer.cfg.train, trainer.run, trainer.train_set.sample_rate
        if t.sample_count < 1 or t.sample_seconds <= 0:
            return
        out = run.samples_at(trainer.step)
        model = trainer.output_model
        model.eval()
        levels = generate(model, int(t.sample_seconds * rate), batch=t.sample_count,
                          temperature=t.sample_temperature, seed=t.seed + trainer.step, min_p=t.sample_min_p)
        model.train()
        stats = []
        for i, clip in enumerate(decode(levels.cpu().numpy(), trainer.quantizer)[0]):
            wav = out / f"sample-{i:02d}.wav"
            write_wav(wav, clip, rate)
            write_json(wav.with_suffix(".json"), {
                "step": trainer.step, "temperature": t.sample_temperature, "min_p": t.sample_min_p,
                "seed": t.seed + trainer.step,
                "stream": i, "checkpoint": str(run.snapshot(trainer.step)), "seconds": t.sample_seconds})
            s = clip_stats(clip, rate)
            if s.get("verdict") in BAD_VERDICTS:
                trainer.log(f"warning: sample {wav.name} at step {trainer.step} sounds {s['verdict']}")
            stats.append({"file": str(wav), **s})
        trainer.metrics(sample_stats=stats)
        tensorboard_audio(trainer, out)


def tensorboard_audio(trainer: Trainer, folder: Path) -> None:
    """The preview clips in `folder` as audio in TensorBoard, when it is installed (read back from the WAVs, so
    TensorBoard plays what the files hold)."""
    if trainer.tensorboard is None:
        return
    import soundfile as sf
    import torch

    for wav in sorted(folder.glob("sample-*.wav")):
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)  # (n, channels)
        trainer.tensorboard.add_audio(f"samples/{wav.stem}", torch.from_numpy(audio.T[:1]), trainer.step,
                                      sample_rate=rate)
    trainer.tensorboard.flush()


class GalleryPage:
    """Rebuild the run's gallery page, at most every GALLERY_EVERY_S seconds unless forced (the last one)."""

    def __init__(self) -> None:
        self.built_at = 0.0

    def __call__(self, trainer: Trainer, force: bool = False) -> None:
        if not force and time.time() - self.built_at < GALLERY_EVERY_S:
            return
        self.built_at = time.time()
        build(trainer.run, trainer.log)


def build(run: RunFolder, log) -> Path | None:
    """Rebuild a run's gallery page -> its path; a failure is logged and gives None (the page is a
    convenience: neither a days-long run nor a finished render may fail for it)."""
    from .gallery import build_gallery

    try:
        return build_gallery(run.path)
    except Exception as e:  # noqa: BLE001 (a broken picture must not stop the caller)
        log(f"warning: could not rebuild the gallery: {type(e).__name__}: {e}")
        return None
