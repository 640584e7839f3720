"""`soundalike train` / `python train.py`: truncated-BPTT training that survives kills and resumes exactly.

The run folder `runs/<name>/` holds the resolved config, `metrics.jsonl`, `train.log`, checkpoints and audio
samples. Running the same command again resumes from `checkpoints/latest.pt` with the model, optimizer,
scheduler, data-loader position, carried recurrent state and RNG state, so a resumed run ends with the same
weights as an uninterrupted one (on CPU). Several GPUs or machines: `torchrun --nproc_per_node=K train.py ...`
(PyTorch DDP; each rank reads its own shard of the data, rank 0 alone writes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from . import callbacks, models
from . import checkpoint as ckpt_io
from .atomic import check_folder
from .averaging import WeightAverage
from .config import Config, TrainConfig, load_config, parse_duration, save_config
from .data import AudioDataset, TBPTTLoader
from .device import pick_device
from .errors import UserError
from .evaluate import LOG2, evaluate_nll
from .quantize import Quantizer
from .run_folder import RunFolder, numbered
from .sparsity import Pruner


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


class _Interrupted(Exception):
    """A stop signal arrived during validation or sample rendering, which are abandoned for it."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (configs/*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.batch_size=32 (repeatable)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all (train.max_steps)")
    p.add_argument("--max-time", help="stop after this long, e.g. 3d, 12h, 90m (train.max_time)")
    p.add_argument("--name", help="run name (folder under runs/); default: the config file's stem")
    p.add_argument("--device", help="cuda, cuda:1 or cpu; default: CUDA if available")
    p.add_argument("--fresh", action="store_true",
                   help="start over even if the run folder has a checkpoint (the old one is moved aside)")
    p.add_argument("--init-from", metavar="CKPT_OR_EXPORT",
                   help="start a new run from this model's weights (checkpoint, snapshot or export folder; the same "
                        "model section, any data), with a fresh optimizer; a run that resumes ignores it")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.max_time is not None:
        overrides.append(f"train.max_time={args.max_time}")
    if args.name is not None:
        overrides.append(f"name={args.name}")
    cfg = load_config(args.config, overrides)
    Trainer(cfg, device=args.device, fresh=args.fresh, init_from=args.init_from).fit()
    return 0


# ---------------------------------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> tuple[Dist, torch.device]:
    """Join the torchrun process group if there is one, and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device is None:
        dev = torch.device(f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = pick_device(device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return d, dev


def detach_state(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    if state is None:
        return None
    return type(state)(detach_state(s) for s in state)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast pays off here: CUDA with bf16, or a CPU with native bf16 instructions."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def lr_factor(step: int, t: TrainConfig) -> float:
    """The LR as a fraction of train.lr for the update after `step` updates: a linear warmup over
    warmup_steps, then constant, then over the last decay_steps updates before max_steps a half cosine down
    towards decay_to (the last update still moves the weights). A function of the step alone, so a resumed run
    follows the same schedule."""
    f = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0
    start = t.max_steps - t.decay_steps
    if t.decay_steps and step >= start:
        done = min(1.0, (step - start) / t.decay_steps)
        f *= t.decay_to + (1.0 - t.decay_to) * 0.5 * (1.0 + math.cos(math.pi * done))
    return f


def noise_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one step's input noise on one rank: a function of where training is, so a resumed run
    draws the same noise without keeping a generator's state."""
    return (seed * 1_000_003 + step * 4099 + rank) % 2**63


def noisy_inputs(x: torch.Tensor, levels: int, std: float, seed: int) -> torch.Tensor:
    """x (B, n) levels moved by whole levels of Gaussian noise, each row with its own standard deviation drawn
    from [0, std] levels of a 256-level scale (times levels / 256), clamped to the levels' range."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.rand(x.shape[0], 1, generator=g) * (std * levels / 256)
    noise = torch.round(torch.randn(x.shape, generator=g) * spread).to(x.dtype).to(x.device)
    return (x + noise).clamp_(0, levels - 1)


class Trainer:
    """Owns the run folder, the model, the optimizer and the loop."""

    def __init__(self, cfg: Config, device: str | None = None, fresh: bool = False, init_from: str | None = None):
        self.cfg = cfg
        self.dist, self.device = setup_distributed(device)
        t = cfg.train
        if t.batch_size % self.dist.world:
            raise UserError(f"train.batch_size: {t.batch_size} is not divisible by the {self.dist.world} ranks")
        if self.device.type == "cpu":
            torch.set_num_threads(t.threads or os.cpu_count() or 1)
        self.run = RunFolder(check_folder(Path(cfg.run_root) / cfg.name, "run folder"))
        if fresh and self.dist.main and self.run.path.exists():
            aside = self.run.path.with_name(f"{self.run.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            self.run.path.rename(aside)
        self._barrier()

        self.quantizer = Quantizer(cfg.data.quantization, cfg.data.q_levels, cfg.data.pre_emphasis)
        self.train_set = AudioDataset(cfg.data.path, self.quantizer, "train")
        self.valid_set = AudioDataset(cfg.data.path, self.quantizer, "valid")

        torch.manual_seed(t.seed)
        self.model = models.from_config(cfg).to(self.device)
        self.net = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        fused = self.device.type == "cuda"
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=t.lr,
                                    fused=fused)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, t))
        self.use_amp = t.amp and bf16_supported(self.device)
        self.loader = TBPTTLoader(self.train_set, t.batch_size // self.dist.world, t.seq_len,
                                  self.model.lookback, t.seed, self.dist.rank, self.dist.world,
                                  with_levels=getattr(cfg.model, "level_input", False), gain_db=t.level_augment)
        self.step, self.elapsed, self.best_val = 0, 0.0, math.inf
        self.tbptt_state = None
        self.stop_reason: str | None = None  # set by a stop signal
        self._interruptible = False  # whether a stop signal may abandon what runs now (validation, samples)
        self.validation_pending = False  # a signal cut the validation of this step short: run it on resume
        self.after_validation: list[callbacks.Job] = [callbacks.PreviewSnapshot(), callbacks.PreviewClips(),
                                                      callbacks.GalleryPage()]
        self.init_from: dict | None = None  # the model this run started from (`--init-from`), as recorded
        self.average: WeightAverage | None = None  # train.ema's averaged weights
        self._resume_or_start(init_from)
        # after loading: its masks come from the weights' zeros
        self.pruner = Pruner(self.model, cfg.sparsity, (self.average.model,) if self.average else ())
        self.tensorboard = self._open_tensorboard()

    # --- run folder ---------------------------------------------------------------------------------------

    def _barrier(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()

    def _resume_or_start(self, init_from: str | None = None) -> None:
        latest = self.run.checkpoint("latest")
        if latest.exists():
            ck = ckpt_io.load_checkpoint(latest, map_location=self.device)
            old = ck["config"]
            for section in ("data", "model"):
                if old[section] != self.cfg.to_dict()[section]:
                    raise UserError(f"{self.run.path}: holds a run with a different {section} section; use "
                                    f"--name NEW or --fresh to start a new run")
            if old["train"]["batch_size"] != self.cfg.train.batch_size or \
                    old["train"]["seq_len"] != self.cfg.train.seq_len:
                raise UserError(f"{self.run.path}: train.batch_size and train.seq_len must match the run "
                                f"being resumed ({old['train']['batch_size']}, {old['train']['seq_len']})")
            self._load_training_state(ck)
            self.log(f"resumed {latest} at step {self.step}" + (f" (--init-from {init_from} applies only to a new "
                                                                "run)" if init_from else ""))
        else:
            if init_from:
                self._init_weights(Path(init_from))
            if getattr(self.model, "level_input", False):  # what renders ask for by default: the data's level
                self.model.level_default.fill_(self.train_set.level_db)
            if self.cfg.train.ema:
                self.average = WeightAverage(self.model, self.cfg.train.ema)
            self.log(f"new run {self.run.path}: {models.count_parameters(self.model):,} parameters, "
                     f"device {self.device}, bf16 autocast {'on' if self.use_amp else 'off'}")
        if self.dist.main:
            save_config(self.cfg, self.run.config)

    def _init_weights(self, source: Path) -> None:
        """Start from another model's weights (`--init-from`): the same model section and quantizer are required
        (but for a level input this model adds), the data may differ; the optimizer starts fresh."""
        ck = ckpt_io.load_checkpoint(source, map_location=self.device)
        if ck["quantizer"] != self.quantizer.to_dict():
            q = ck["quantizer"]

            def named(kind: object, levels: object, emphasis: object) -> str:
                return f"{kind} {levels}" + (f" with pre-emphasis {emphasis}" if emphasis else "")

            here = self.quantizer
            raise UserError(f"--init-from {source}: quantizes to {named(q.get('kind'), q.get('levels'), q.get('pre_emphasis'))}"
                            f", this config to {named(here.kind, here.levels, here.pre_emphasis)} (data.quantization, "
                            "data.q_levels, data.pre_emphasis)")
        # The config's model section names what differs; the constructor arguments catch anything else. A level
        # input may be added (`soundalike.loudness`): it starts at zero, so the model computes what it did there.
        adding_level = getattr(self.model, "level_input", False) and not ck["model_kwargs"].get("level_input")
        for there, here in ((ck["config"]["model"], self.cfg.to_dict()["model"]),
                            (ck["model_kwargs"], dict(self.model.kwargs))):
            keys = [k for k in {**there, **here} if there.get(k) != here.get(k)
                    and not (adding_level and k == "level_input")]
            if keys:
                also = f"; also {', '.join('model.' + k for k in keys[1:])}" if keys[1:] else ""
                raise UserError(f"--init-from {source}: model.{keys[0]} is {there.get(keys[0])!r} there, "
                                f"{here.get(keys[0])!r} here (the model section must be the same{also})")
        if adding_level:
            state = {**self.model.state_dict(), **ck["model"]}  # the level input's zeros
            self.model.load_state_dict(state)
        else:
            self.model.load_state_dict(ck["model"])
        self.init_from = {"path": str(source.resolve()), "step": ck.get("step"), "sample_rate": ck["sample_rate"],
                          "data": ck["config"]["data"].get("path")}
        self.log(f"initialized the weights from {source} (step {ck.get('step')}, trained on "
                 f"{self.init_from['data']} at {ck['sample_rate']} Hz); fresh optimizer")

    def log(self, msg: str) -> None:
        if not self.dist.main:
            return
        self.run.path.mkdir(parents=True, exist_ok=True)
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        tqdm.write(line)
        with open(self.run.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def metrics(self, **values) -> None:
        """Append a row to metrics.jsonl (and to TensorBoard when it is installed)."""
        if not self.dist.main:
            return
        row = {"step": self.step, "elapsed_s": round(self.elapsed, 3), **values}
        with open(self.run.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, self.step)
            self.tensorboard.flush()

    def _open_tensorboard(self):
        if not self.dist.main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.run.tensorboard))

    # --- checkpoints ----------------------------------------------------------------------------------------

    @property
    def output_model(self) -> torch.nn.Module:
        """The model that checkpoints hold, validation measures and previews play: the weights' average with
        train.ema, else the weights themselves."""
        return self.model if self.average is None else self.average.model

    def _training_state(self) -> dict:
        payload = ckpt_io.model_payload(self.output_model, self.quantizer, self.train_set.sample_rate,
                                        self.cfg.to_dict(), self.train_set.level_db)
        if self.average is not None:
            payload.update(trained_model=self.model.state_dict(), average_updates=self.average.updates)
        payload.update(
            optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(), step=self.step,
            elapsed_s=self.elapsed, best_val_bits=self.best_val, loader=self.loader.state_dict(),
            validation_pending=self.validation_pending,
            tbptt_state=detach_state(self.tbptt_state), torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
        if self.init_from is not None:
            payload["init_from"] = self.init_from
        return payload

    def model_state(self) -> dict:
        """The checkpoint without its training state (a preview snapshot): the model and its description."""
        return ckpt_io.without_training_state(self._training_state())

    def _load_training_state(self, ck: dict) -> None:
        averaged = "trained_model" in ck
        self.model.load_state_dict(ck["trained_model"] if averaged else ck["model"])
        if self.cfg.train.ema:
            self.average = WeightAverage(self.model, self.cfg.train.ema)
            if averaged:  # else the average starts from the weights, as in a new run
                self.average.model.load_state_dict(ck["model"])
                self.average.updates = int(ck["average_updates"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.step, self.elapsed, self.best_val = ck["step"], ck["elapsed_s"], ck["best_val_bits"]
        self.loader.load_state_dict(ck["loader"])
        self.tbptt_state = ck["tbptt_state"]
        self.validation_pending = bool(ck.get("validation_pending", False))
        self.init_from = ck.get("init_from")
        torch.set_rng_state(ck["torch_rng"])
        if ck.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])

    def save(self, names: list[str]) -> None:
        """Write the checkpoint under each of `names` (atomically), and prune old numbered ones."""
        if not self.dist.main:
            return
        payload = self._training_state()
        for name in names:
            ckpt_io.save_checkpoint(self.run.checkpoint(name), payload)
        # Only names this trainer writes (step-<8 digits>.pt): a user's own file there is never removed; nor is a
        # favourite (`soundalike keep`).
        self.run.prune(self.run.numbered_checkpoints(), self.cfg.train.keep_last)

    # --- the loop ---------------------------------------------------------------------------------------------

    def autocast(self):
        if not self.use_amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def train_step(self) -> float:
        """One TBPTT window for every stream; returns the batch's mean NLL in bits/sample."""
        batch = next(self.loader)
        x = batch.x.to(self.device, non_blocking=True)
        reset = batch.reset.to(self.device, non_blocking=True)
        with self.autocast():
            t = self.cfg.train
            inputs, targets = x, None
            if t.input_noise > 0:  # noisy inputs, the window's clean samples as targets
                inputs = noisy_inputs(x, self.quantizer.levels, t.input_noise,
                                      noise_seed(t.seed, self.step, self.dist.rank))
                targets = x[:, self.model.lookback:]
            extra = {} if batch.level is None else {"level": batch.level.to(self.device, non_blocking=True)}
            nll, state = self.net(inputs, self.tbptt_state, reset, nll=True, targets=targets, **extra)
        loss = nll.float().mean()
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {self.step + 1}; the last good checkpoint "
                f"{self.run.checkpoint('latest')} is intact. Lower train.lr or train.grad_clip and resume.")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.pruner.mask_gradients()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.opt.step()
        self.sched.step()
        self.tbptt_state = detach_state(state)
        self.step += 1
        self.pruner.after_step(self.step)
        if self.average is not None:
            self.average.update(self.model)
        return loss.item() / LOG2

    def validate(self) -> dict:
        # The unwrapped model: ranks may hold different numbers of validation batches, and DDP's forward
        # would make every rank take part in a collective per batch. No autocast: the reported metric is
        # computed in full precision, the same as `soundalike evaluate`.
        v = evaluate_nll(self.output_model, self.valid_set, self.cfg.train.val_batch_size, self.cfg.train.seq_len,
                         self.device, self.dist.rank, self.dist.world)
        return v

    def check_ranks_in_sync(self) -> None:
        """Under DDP, compare a fingerprint of every parameter across ranks; diverged replicas are a bug."""
        if self.dist.world == 1:
            return
        params = [p.detach().double() for p in self.model.parameters()]
        mine = torch.stack([torch.stack([p.sum(), p.abs().sum()]) for p in params]).flatten()
        gathered = [torch.empty_like(mine) for _ in range(self.dist.world)]
        dist.all_gather(gathered, mine)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise AssertionError(f"DDP replicas diverged at step {self.step}")
        self.log(f"step {self.step}: {self.dist.world} ranks in sync ({len(params)} parameter tensors equal)")

    def _stop_requested(self, deadline: float | None, started: float, cpu_budget: float | None,
                        cpu_started: float) -> str | None:
        t = self.cfg.train
        if t.max_steps and self.step >= t.max_steps:
            return f"reached max_steps={t.max_steps}"
        if deadline is not None and time.time() - started >= deadline:
            return f"reached max_time={t.max_time}"
        if cpu_budget is not None and time.process_time() - cpu_started >= cpu_budget:
            return f"reached max_cpu_time={t.max_cpu_time}"
        return self.stop_reason

    def _on_signal(self, signum, frame) -> None:
        if self.stop_reason is not None:  # a second signal: stop at once (an atomic write in progress is dropped)
            raise KeyboardInterrupt
        self.stop_reason = f"received signal {signal.Signals(signum).name}"
        if self._interruptible:
            raise _Interrupted

    def _agree(self, reason: str | None) -> str | None:
        """Under DDP every rank must stop at the same step: a stop wanted by any rank (a signal reaches ranks
        at different moments; time limits are read on different clocks) stops them all."""
        if self.dist.world == 1:
            return reason
        kind = 2 if self.stop_reason else 1 if reason else 0
        flag = torch.tensor([kind], dtype=torch.float64, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if int(flag.item()) == 2 and self.stop_reason is None:
            self.stop_reason = "another rank received a stop signal"
        return reason or (None if int(flag.item()) == 0 else self.stop_reason or "another rank reached a limit")

    def fit(self) -> None:
        """Train until a limit or a stop signal. On SIGINT / SIGTERM only `latest` is written (no validation,
        samples or gallery, which can take minutes); a second signal exits at once."""
        t = self.cfg.train
        deadline = parse_duration(t.max_time)
        started = time.time()
        cpu_budget = parse_duration(t.max_cpu_time)
        cpu_started = time.process_time()
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        samples_per_step = t.batch_size * t.seq_len
        # Redirected to a file (a days-long run under nohup), a bar redraw every 30 s is enough.
        bar = tqdm(total=t.max_steps or None, initial=self.step, disable=not self.dist.main,
                   unit="step", dynamic_ncols=True, desc=self.cfg.name,
                   mininterval=0.5 if sys.stderr.isatty() else 30)
        window_loss, window_n, window_t = 0.0, 0, time.time()
        last_val_step = self.step
        try:
            if self.validation_pending:  # the run was stopped during this step's validation
                self._checkpoint_and_validate()
            while (reason := self._agree(self._stop_requested(deadline, started, cpu_budget, cpu_started))) is None:
                step_t = time.time()
                loss = self.train_step()
                self.elapsed += time.time() - step_t
                window_loss += loss
                window_n += 1
                bar.update(1)
                if self.step % t.log_every == 0:
                    dt = time.time() - window_t
                    sps = window_n * samples_per_step / max(dt, 1e-9)
                    audio_rate = sps / self.train_set.sample_rate
                    postfix = {"loss": f"{window_loss / window_n:.3f}b", "audio_s/s": f"{audio_rate:.2f}"}
                    if deadline is not None:
                        left = max(0.0, deadline - (time.time() - started))
                        postfix["time_left"] = time.strftime("%H:%M:%S", time.gmtime(left)) if left < 86400 \
                            else f"{left / 86400:.1f}d"
                    bar.set_postfix(postfix)
                    self.metrics(train_bits=window_loss / window_n, lr=self.sched.get_last_lr()[0],
                                 samples_per_s=sps)
                    window_loss, window_n, window_t = 0.0, 0, time.time()
                if self.step % t.val_every == 0:
                    self._checkpoint_and_validate()
                    last_val_step = self.step
                    window_t = time.time()
                elif self.step % t.ckpt_every == 0:
                    self.save([numbered(self.step), "latest"])
            if self.stop_reason is not None:
                self._stop_now()
                return
            if self.step != last_val_step:
                self._checkpoint_and_validate()
            self.log(f"stopped at step {self.step}: {reason}")
            self._after_validation(final=True)
        except _Interrupted:
            self._stop_now()
        finally:
            bar.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
        self._barrier()

    def _stop_now(self) -> None:
        """Save `latest` (everything exact resume needs) and nothing else: the process may have seconds left."""
        self.save(["latest"])
        self.log(f"stopped at step {self.step}: {self.stop_reason}; saved {self.run.checkpoint('latest')}, run "
                 "the same command to resume")

    def _after_validation(self, final: bool = False) -> None:
        """The after-validation jobs (rank 0); `final`: the run ends, only the jobs that must see it run."""
        if not self.dist.main:
            return
        for job in self.after_validation:
            if not final or isinstance(job, callbacks.GalleryPage):
                job(self, force=final)

    def _checkpoint_and_validate(self) -> None:
        t = self.cfg.train
        self.check_ranks_in_sync()
        # Under DDP a rank leaving validation alone would hang the others in its collectives.
        self._interruptible = self.dist.world == 1
        self.validation_pending = True
        try:
            result = self.validate()
            val = result["bits"]
            improved = val < self.best_val
            self.best_val = min(self.best_val, val)
            self.validation_pending = False
            names = ["latest"] + (["best"] if improved else [])
            if self.step % t.ckpt_every == 0:
                names.append(numbered(self.step))
            self.save(names)
            self.metrics(val_bits=val, val_bits16=result["bits16"], best_val_bits=self.best_val)
            self.log(f"step {self.step}: validation NLL {val:.4f} bits/sample, {result['bits16']:.4f} at 16-bit "
                     f"resolution (best {self.best_val:.4f})")
            self._after_validation()
        finally:
            self._interruptible = False
