"""`python render.py` / `soundalike render`: tracks from a checkpoint, streamed to disk, resumable.

With no flag it renders 60 s from runs/<most recent run>/checkpoints/best.pt into
renders/<run>/<YYYYmmdd-HHMMSS>/track-NN.wav with a render.json (docs/CONTRACTS.md). The N tracks of
`--count` are generated together as one batch. Every block (`--block-seconds` of audio) is appended to each
file and flushed, so the files are playable at every moment and memory does not grow with `--seconds`;
then the sampler's state (recurrent state, history, noise position) is saved atomically beside them, so
`--resume DIR` continues an interrupted render exactly: the result is bitwise the uninterrupted one.
FLAC output is written as WAV while rendering (a FLAC file is only readable once closed) and encoded at
the end. Sample rate, quantization, pre-emphasis and bit depth (16-bit PCM) come from the checkpoint; the
de-emphasis filter's state per track is part of the saved state. A render resumes on the kind of device it
started on (CPU or CUDA: they draw the noise differently).

Under torchrun (`torchrun --nproc_per_node N render.py --count 64 ...`) each process renders a contiguous share
of the tracks on its own device into the one output folder, and rank 0 writes the one render.json: the tracks
are those a single process renders with the same seed (each stream draws its own rows of the batch's noise,
`sampling.reference.StreamSlice`). Each process keeps its own state file; `--resume` needs the same N.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.distributed as dist
from tqdm import tqdm

from . import callbacks, loudness
from . import checkpoint as ckpt_io
from .atomic import atomic_path, check_folder, write_json
from .audio import iter_blocks
from .dataset import normalization_gain
from .device import pick_device
from .emphasis import DeemphasisState, decode, encode, last_output
from .errors import UserError
from .quantize import Quantizer
from .run_folder import RunFolder, newest_best, renders_for
from .sampling.engine import WEIGHTS
from .sampling.reference import StreamSlice

STATE = ".render-state.pt"
STATE_PART = re.compile(r"\.render-state-\d+-of-\d+\.pt")  # a process's own under torchrun (`Part.state`)
SUBTYPE = "PCM_16"  # enough for every quantizer (at most 65536 levels)
DEFAULT_SECONDS = 60.0
MAX_COUNT = 65536  # tracks in one batch; more would exhaust memory before the first sample


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", help="checkpoint file or export folder (`soundalike export`); default: "
                                  "runs/<most recent run>/checkpoints/best.pt")
    p.add_argument("--seconds", type=float, help=f"seconds to generate per track (default {DEFAULT_SECONDS:g})")
    p.add_argument("--count", type=int, default=1, help="tracks, generated together in one batch (default 1)")
    p.add_argument("--temperature", default="1.0",
                   help="sampling temperature: one value, or one per track separated by commas (default 1.0)")
    p.add_argument("--min-p", type=float,
                   help="cut the improbable tail: draw only levels at least this fraction as likely as the most "
                        "likely one (min-p sampling; 0 = off; default: the model's own, its config's "
                        "train.sample_min_p; see docs/SAMPLING.md)")
    p.add_argument("--level", type=float, metavar="DB",
                   help="RMS level in dBFS to ask of a model trained with a level input (model.level_input, "
                        "experimental; default: its training data's level)")
    p.add_argument("--hold-level", nargs="?", const="data", metavar="DB|off",
                   help="hold each track's RMS level at DB dBFS by tilting the model's distribution toward louder "
                        "or quieter samples as the track drifts (softmax heads; docs/SAMPLING.md). Default: the "
                        "training data's level, where the checkpoint records it and the head is a softmax; "
                        "off: the model's own level")
    p.add_argument("--seed", type=int, help="random seed (default: a new one, printed and saved in render.json)")
    p.add_argument("--prime", metavar="FILE", help="audio file whose start sets the model's state first")
    p.add_argument("--prime-seconds", type=float, default=4.0, help="seconds of --prime to use (default 4)")
    p.add_argument("--keep-prime", action="store_true", help="begin each track with the primed audio")
    p.add_argument("--format", choices=("wav", "flac"), default="wav", help="output format (default wav)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available)")
    p.add_argument("--out", help="output folder (default: renders/<run>/<YYYYmmdd-HHMMSS>/)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the tracks and render.json of an earlier render in --out (refused otherwise)")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted render in DIR; of the other flags "
                                                    "only --seconds (a new length), --device and --threads apply")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of the compiled loops (default 0: one per core)")
    p.add_argument("--weights", choices=WEIGHTS, default="full",
                   help="full (default): the model as trained. bf16 / int8: weight matrices stored as bfloat16 / "
                        "8-bit integers with a scale per row, arithmetic still float32: large SampleRNNs render "
                        "faster on the CPU (docs/MEASUREMENTS.md), a slightly different model (its cost: "
                        "`soundalike evaluate --weights`)")
    p.add_argument("--block-seconds", type=float, default=1.0,
                   help="audio per write and resume point (default 1)")
    p.add_argument("--runs", default="runs", help="runs folder searched for the default checkpoint")


def run(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise UserError(f"--threads must be 0 (one per core) or more, got {args.threads}")
    part = Part.join()
    try:
        if args.resume:
            job = Render.resume(Path(args.resume), args.seconds, args.device, args.threads, part)
        else:
            job = Render.start(args, part)
        job.render()
        if part.main:
            _gallery(job)
    finally:
        part.leave()
    return 0


# --- several processes (torchrun) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """This process's share of a render: rank r of `world` renders tracks [count * r // world, count * (r + 1) //
    world). One process is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def join(cls) -> Part:
        """This process's part under torchrun (joining its gloo group: only small messages and barriers pass)."""
        env = {k: int(os.environ.get(k, d)) for k, d in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0),
                                                         ("LOCAL_WORLD_SIZE", 1))}
        part = cls(env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"])
        if part.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")
        return part

    def leave(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def tracks(self, count: int) -> range:
        return range(count * self.rank // self.world, count * (self.rank + 1) // self.world)

    @property
    def state(self) -> str:
        """This process's state file in the render folder."""
        return STATE if self.world == 1 else f".render-state-{self.rank}-of-{self.world}.pt"

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def from_main(self, plan):
        """Run `plan()` on rank 0 alone and give every rank its result (a UserError there is raised on every
        rank: the others must not wait for a render that will not start)."""
        if self.world == 1:
            return plan()
        box: list = [None]
        if self.main:
            try:
                box[0] = ("ok", plan())
            except UserError as e:
                box[0] = ("error", str(e))
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise UserError(value)
        return value

    def device(self, name: str | None) -> torch.device:
        """The flag's device; under torchrun CUDA means this process's own GPU."""
        device = pick_device(name)
        if self.world > 1 and device.type == "cuda" and (name is None or ":" not in name):
            device = torch.device(f"cuda:{self.local_rank % torch.cuda.device_count()}")
        return device

    def threads(self, threads: int, device: torch.device) -> int:
        """0 (one per core) shares the cores between this machine's processes."""
        if threads or self.local_world == 1 or device.type != "cpu":
            return threads
        from .sampling.engine import cpu_threads

        return max(1, cpu_threads(0) // self.local_world)


# --- arguments --------------------------------------------------------------------------------------------


def parse_temperatures(text: str, count: int) -> list[float]:
    """'0.9' or '0.8,1.0,1.2' -> one positive temperature per track."""
    try:
        temps = [float(t) for t in str(text).split(",")]
    except ValueError:
        raise UserError(f"--temperature: expected numbers separated by commas, got {text!r}") from None
    if any(not math.isfinite(t) or t <= 0 for t in temps):
        raise UserError(f"--temperature: every temperature must be a positive number, got {text!r}")
    if len(temps) == 1:
        return temps * count
    if len(temps) != count:
        raise UserError(f"--temperature: {len(temps)} values for --count {count}; give one, or one per track")
    return temps


def read_prime(path: str, seconds: float, rate: int, quantizer: Quantizer) -> np.ndarray:
    """The first `seconds` of an audio file as levels: mono, at `rate`, at the dataset's level, pre-emphasized
    (from silence, as a chunk of the data) and quantized."""
    want, parts = round(seconds * rate), []
    for block in iter_blocks(path, rate):
        parts.append(block[:want - sum(len(p) for p in parts)])
        if sum(len(p) for p in parts) >= want:
            break
    audio = np.concatenate(parts).astype(np.float64)
    # Training data is normalized per dataset (dataset.normalization_gain); bring the prime to the same level.
    audio *= normalization_gain(float(np.abs(audio).max()))
    return encode(audio, quantizer)


def _new_folder(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, k = root / stamp, 1
    while out.exists():
        k += 1
        out = root / f"{stamp}-{k}"
    return out


# --- the render -------------------------------------------------------------------------------------------


class Render:
    """One render folder: the sampler, the open track files and the saved state that resumes them."""

    def __init__(self, out: Path, params: dict, device: torch.device, threads: int, part: Part = Part()):
        from .sampling import Sampler

        self.out, self.params, self.part = out, params, part
        self.tracks = part.tracks(params["count"])
        mine = slice(self.tracks.start, self.tracks.stop)
        digest = _sha256(params["checkpoint"])
        if params.setdefault("checkpoint_sha256", digest) != digest:
            raise UserError(f"{params['checkpoint']}: changed since this render started (training went on?); "
                            "it cannot be resumed exactly")
        ckpt = ckpt_io.load_checkpoint(params["checkpoint"])
        self.quantizer, self.rate = ckpt_io.quantizer_of(ckpt), int(ckpt["sample_rate"])
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # logits differ in the last bits only
        model = ckpt_io.build_model(ckpt).to(device)
        if params.get("min_p", 0.0) is None:  # no --min-p: the tail cut the model was shipped with
            params["min_p"] = ckpt_io.default_min_p(ckpt)
        # A level input: asked for --level (default: the data's), folded into the model once.
        model, params["level"] = loudness.ask(model, params.get("level"), params["checkpoint"])
        params["hold_level"] = loudness.hold_target(params.get("hold_level"), ckpt, model, params["checkpoint"])
        del ckpt
        # On a GPU the noise is drawn there too: from the CPU it would cap large batches.
        head = model.head
        self.sampler = Sampler(model, len(self.tracks), params["temperatures"][mine], params["seed"], device=device,
                               threads=part.threads(threads, device), device_noise=device.type == "cuda",
                               weights=params.get("weights", "full"), min_p=params.get("min_p", 0.0))
        if part.world > 1:
            self.sampler.noise = StreamSlice(params["count"], mine, head.noise_width, params["seed"],
                                             device=self.sampler.noise.device, uniform=head.uniform)
        self.block = max(1, round(params["block_seconds"] * self.rate))
        self.target = round(params["seconds"] * self.rate)
        n = len(self.tracks)
        self.peak, self.sumsq, self.frames = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
        self.deemphasis: DeemphasisState | None = None  # the de-emphasis filter of every track, between blocks
        self.hold = loudness.make_hold(params["hold_level"], n, self.rate, self.quantizer)
        self.files: list[sf.SoundFile] = []

    @property
    def paths(self) -> list[Path]:
        return [self.out / f"track-{i:02d}.wav" for i in self.tracks]

    @classmethod
    def start(cls, args: argparse.Namespace, part: Part = Part()) -> Render:
        out, params = part.from_main(lambda: cls._plan(args, part))
        job = cls(out, params, part.device(args.device), args.threads, part)
        if part.main:
            level = "" if params.get("level") is None else f", level {params['level']:g} dBFS"
            if params["hold_level"] is not None:
                level += f", holding {params['hold_level']:g} dBFS"
            print(f"seed {params['seed']}, min-p {params['min_p']:g}{level}; writing {args.count} track(s) of "
                  f"{params['seconds']:g} s to {out}"
                  + (f" from {part.world} processes" if part.world > 1 else ""), file=sys.stderr)
        prime = None
        if args.prime is not None:
            prime = read_prime(args.prime, args.prime_seconds, job.rate, job.quantizer)
            job.sampler.prime(prime)
        out.mkdir(parents=True, exist_ok=True)
        job.files = [sf.SoundFile(p, "w", job.rate, 1, SUBTYPE, format="WAV") for p in job.paths]
        if prime is not None:
            primed = np.broadcast_to(prime, (len(job.tracks), len(prime)))
            if args.keep_prime:
                job._write(primed)
            else:  # the tracks continue the prime, so de-emphasis starts from its end, as the model does
                job._decode(primed)
        if job.hold is not None:
            job._start_hold()
        job.params["prime_frames_kept"] = int(job.frames[0])
        job._save_state()
        if part.main:
            job._write_info(complete=False)
        return job

    @staticmethod
    def _plan(args: argparse.Namespace, part: Part) -> tuple[Path, dict]:
        """Check the flags and the output folder -> (folder, params); rank 0 alone decides both."""
        if not 1 <= args.count <= MAX_COUNT:
            raise UserError(f"--count must be between 1 and {MAX_COUNT}, got {args.count}")
        if args.count < part.world:
            raise UserError(f"--count {args.count}: fewer tracks than the {part.world} processes rendering them")
        seconds = DEFAULT_SECONDS if args.seconds is None else args.seconds
        _check_seconds("--seconds", seconds)
        _check_seconds("--block-seconds", args.block_seconds)
        if args.seed is not None and not 0 <= args.seed < 2**63:
            raise UserError(f"--seed must be between 0 and 2**63 - 1, got {args.seed}")
        if args.keep_prime and args.prime is None:
            raise UserError("--keep-prime needs --prime FILE")
        if args.prime is not None:
            _check_seconds("--prime-seconds", args.prime_seconds)
            if not Path(args.prime).is_file():
                raise UserError(f"--prime {args.prime}: no such file")
        temps = parse_temperatures(args.temperature, args.count)
        if args.min_p is not None and not 0 <= args.min_p < 1:
            raise UserError(f"--min-p must be at least 0 and below 1, got {args.min_p}")
        if args.level is not None:
            loudness.check_level(args.level)
        pick_device(args.device)
        ckpt = (Path(args.ckpt) if args.ckpt else newest_best(args.runs)).resolve()
        seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
        out = check_folder(args.out if args.out else _new_folder(renders_for(ckpt)), "--out")
        if _states(out):
            raise UserError(f"{out}: holds an unfinished render; continue it with --resume {out}")
        taken = [p.name for p in _outputs(out, args.count) if p.exists()]
        if taken and not args.overwrite:
            raise UserError(f"--out {out}: already holds {', '.join(taken[:3])}{', ...' if len(taken) > 3 else ''}; "
                            "choose another folder, or pass --overwrite to replace them")
        params = {"checkpoint": str(ckpt), "seconds": seconds, "count": args.count, "temperatures": temps,
                  "min_p": args.min_p, "level": args.level, "hold_level": loudness.parse_hold(args.hold_level),
                  "seed": seed, "format": args.format, "block_seconds": args.block_seconds, "weights": args.weights,
                  "prime": None if args.prime is None else {"file": str(Path(args.prime).resolve()),
                                                            "seconds": args.prime_seconds,
                                                            "keep": args.keep_prime}}
        return out, params

    @classmethod
    def resume(cls, out: Path, seconds: float | None, device: str | None, threads: int,
               part: Part = Part()) -> Render:
        mine = out / part.state
        if not mine.is_file():
            done, others = (out / "render.json").is_file(), _states(out)
            if others:
                raise UserError(f"{out}: was rendered by {len(others)} process(es) ({others[0].name}); resume it with "
                                f"as many: torchrun --nproc_per_node {len(others)} render.py --resume {out}")
            raise UserError(f"{out}: " + ("this render is complete; nothing to resume" if done
                                          else f"no render to resume here ({STATE} not found)"))
        state = _read_state(mine, part)
        params = state["params"]
        if seconds is not None:
            _check_seconds("--seconds", seconds)
            params["seconds"] = seconds
        job = cls(out, params, part.device(device), threads, part)
        try:
            job.sampler.load_state_dict(state["sampler"])
            if job.hold is not None:
                job.hold.load_state(state["hold"])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise UserError(f"{mine}: not a render state this checkpoint can continue "
                            f"({type(e).__name__}: {e})") from None
        job.peak, job.sumsq, job.frames = (state[k].numpy() for k in ("peak", "sumsq", "frames"))
        if "deemphasis" in state:
            job.deemphasis = DeemphasisState(*(state["deemphasis"][k].numpy() for k in DeemphasisState._fields))
        if job.hold is not None and job.hold.decay and job.sampler.heard is None:
            job._start_hold()  # a state saved before the heard tilt: it starts here, from the audio written
        if job.sampler.generated > job.target:
            raise UserError(f"{out}: already holds {job.sampler.generated / job.rate:g} s; --seconds must be more")
        for path, frames in zip(job.paths, job.frames):
            if not path.is_file():
                raise UserError(f"{path}: missing; cannot resume this render")
            f = sf.SoundFile(path, "r+")
            if f.frames < frames:
                raise UserError(f"{path}: holds {f.frames} samples, the saved state {frames}; cannot resume")
            f.truncate(int(frames))  # drop a block written after the last saved state
            f.seek(0, sf.SEEK_END)
            job.files.append(f)
        print(f"resuming {out} at {job.sampler.generated / job.rate:.1f} s of {params['seconds']:g} s",
              file=sys.stderr)
        return job

    def _start_hold(self) -> None:
        """Start the level hold's tilt on the sampler, from the last sample written (or silence)."""
        self.hold.start(self.sampler, last_output(self.deemphasis, self.quantizer.pre_emphasis, len(self.tracks)))

    def _decode(self, levels: np.ndarray) -> np.ndarray:
        """(B, n) levels -> (B, n) float32 audio, carrying the de-emphasis state to the next block."""
        audio, self.deemphasis = decode(levels, self.quantizer, self.deemphasis)
        return audio

    def _generate(self, n: int) -> None:
        """Generate and write the next n samples of every track (with a level hold, in its blocks)."""
        loudness.generate(self.sampler, self.hold, n, self._write)

    def _write(self, levels: np.ndarray) -> np.ndarray:
        """Decode and append levels (B, n) to the tracks; returns the audio written."""
        audio = self._decode(levels)  # (B, n) float32
        for i, f in enumerate(self.files):
            f.write(audio[i])
            f.flush()  # libsndfile rewrites the header: the file is valid up to here
        self.peak = np.maximum(self.peak, np.abs(audio).max(axis=1))
        self.sumsq = self.sumsq + np.square(audio, dtype=np.float64).sum(axis=1)
        self.frames = self.frames + audio.shape[1]
        return audio

    def _save_state(self) -> None:
        # Tensors, not numpy arrays: the state is read back with weights_only=True, which runs no pickled code.
        state = {"params": self.params, "sampler": self.sampler.state_dict(), "peak": torch.from_numpy(self.peak),
                 "sumsq": torch.from_numpy(self.sumsq), "frames": torch.from_numpy(self.frames)}
        if self.hold is not None:
            state["hold"] = self.hold.state()
        if self.deemphasis is not None:
            state["deemphasis"] = {k: torch.from_numpy(v) for k, v in self.deemphasis._asdict().items()}
        with atomic_path(self.out / self.part.state, suffix=".pt") as tmp:
            torch.save(state, tmp)

    def _write_info(self, complete: bool) -> None:
        ext = self.params["format"]
        write_json(self.out / "render.json", {
            "checkpoint": self.params["checkpoint"],
            "seconds": self.params["seconds"],
            "tracks": [{"file": f"track-{i:02d}.{ext}", "temperature": t, "min_p": self.params.get("min_p", 0.0),
                        "seed": self.params["seed"], "stream": i} for i, t in enumerate(self.params["temperatures"])],
            "sample_rate": self.rate,
            "quantization": self.quantizer.to_dict(),
            "count": self.params["count"],
            "prime": self.params["prime"],
            "level": self.params.get("level"),  # dBFS asked of a model with a level input; None without one
            "hold_level": self.params.get("hold_level"),  # dBFS the tracks were held at (--hold-level); None: not
            "processes": self.part.world,
            "complete": complete,
        })

    def render(self) -> None:
        """Generate the remaining blocks, then finish the files; Ctrl-C or SIGTERM leaves a resumable render."""
        s, count = self.sampler, len(self.tracks)
        bar = tqdm(total=round(self.target / self.rate, 2), initial=round(s.generated / self.rate, 2), unit="s",
                   desc="render", dynamic_ncols=True, file=sys.stderr,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}{postfix}]")
        old = signal.signal(signal.SIGTERM, _sigterm) if _main_thread() else None
        started, done_here = time.perf_counter(), 0
        try:
            while s.generated < self.target:
                n = min(self.block, self.target - s.generated)
                self._generate(n)
                self._save_state()
                done_here += n
                rtf = done_here / self.rate / (time.perf_counter() - started)
                bar.set_postfix_str(f"{rtf:.2f}x real time" + (f", {rtf * count:.1f}x all tracks" if count > 1 else ""))
                bar.update(round(s.generated / self.rate, 2) - bar.n)
                _test_hook(self)
        except KeyboardInterrupt:
            bar.close()
            self._close()
            print(f"stopped at {s.generated / self.rate:.1f} s; the files hold everything generated so far. "
                  f"Continue with: python render.py --resume {self.out}", file=sys.stderr)
            raise
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)
        bar.close()
        self._close()
        self._finish()
        elapsed = time.perf_counter() - started
        if done_here:
            print(f"generated {done_here / self.rate:.1f} s x {count} track(s) in {elapsed:.1f} s "
                  f"({done_here / self.rate / elapsed:.2f}x real time per track)", file=sys.stderr)

    def _close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []

    def _finish(self) -> None:
        paths = self.paths
        if self.params["format"] == "flac":
            paths = [to_flac(p) for p in paths]
        self.part.barrier()  # every process's tracks are whole before render.json says so
        if self.part.main:
            self._write_info(complete=True)
        self.part.barrier()
        (self.out / self.part.state).unlink()
        temps = self.params["temperatures"][self.tracks.start:self.tracks.stop]
        for path, t, peak, sumsq, frames in zip(paths, temps, self.peak, self.sumsq, self.frames):
            rms = math.sqrt(sumsq / max(1, frames))
            print(f"{path}: {frames / self.rate:.1f} s, temperature {t:g}, peak {_db(peak)} dBFS, "
                  f"RMS {_db(rms)} dBFS")


def _read_state(path: Path, part: Part = Part()) -> dict:
    """A render's saved state (of `part`'s tracks), read without running any code from the file, its structure
    checked."""
    state = ckpt_io.load_data(path, "render state")
    params = state.get("params") if isinstance(state, dict) else None
    n = params.get("count") if isinstance(params, dict) else None
    ok = (isinstance(n, int) and n >= part.world and isinstance(state.get("sampler"), dict)
          and all(k in params for k in ("checkpoint", "seconds", "temperatures", "seed", "format", "block_seconds"))
          and all(isinstance(state.get(k), torch.Tensor) and state[k].shape == (len(part.tracks(n)),)
                  for k in ("peak", "sumsq", "frames"))
          and ("deemphasis" not in state or _deemphasis_ok(state["deemphasis"], len(part.tracks(n)))))
    if not ok:
        raise UserError(f"{path}: not a soundalike render state (wrong structure)")
    return state


def _deemphasis_ok(d: object, n: int) -> bool:
    """The saved de-emphasis state of n tracks: carry (n,), pending (n, r) float64 tensors."""
    return (isinstance(d, dict) and set(d) == set(DeemphasisState._fields)
            and all(isinstance(v, torch.Tensor) and v.dtype == torch.float64 for v in d.values())
            and d["carry"].shape == (n,) and d["pending"].dim() == 2 and d["pending"].shape[0] == n)


def _check_seconds(flag: str, value: float) -> None:
    if not 0 < value < math.inf:
        raise UserError(f"{flag} must be a positive number of seconds, got {value}")


def _outputs(out: Path, count: int) -> list[Path]:
    """Every file a render of `count` tracks may write in `out`."""
    tracks = [out / f"track-{i:02d}.{ext}" for i in range(count) for ext in ("wav", "flac")]
    return [*tracks, out / "render.json", out / STATE, *_states(out)]


def _states(out: Path) -> list[Path]:
    """The state files of an unfinished render in `out`: one, or one per process of a torchrun render."""
    return sorted(p for p in out.glob(".render-state*.pt") if p.name == STATE or STATE_PART.fullmatch(p.name))


def _sha256(path: str) -> str | None:
    """Of the checkpoint file, or of an export folder's files in turn."""
    h = hashlib.sha256()
    try:
        for file in ckpt_io.files_of(path):
            with open(file, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
    except OSError:
        return None  # load_checkpoint says what is wrong
    return h.hexdigest()


def _db(x: float) -> str:
    return f"{20 * math.log10(x):.1f}" if x > 0 else "-inf"


def to_flac(wav: Path) -> Path:
    """Encode a finished WAV track as FLAC (streamed), then remove the WAV."""
    flac = wav.with_suffix(".flac")
    with sf.SoundFile(wav) as src, atomic_path(flac, suffix=".flac") as tmp, \
            sf.SoundFile(tmp, "w", src.samplerate, 1, SUBTYPE, format="FLAC") as dst:
        for block in src.blocks(65536, dtype="int16"):
            dst.write(block)
    wav.unlink()
    return flac


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def _test_hook(job: Render) -> None:
    """Tests stop a render after some blocks, as a kill would (SOUNDALIKE_RENDER_STOP_AFTER=<blocks>)."""
    stop = os.environ.get("SOUNDALIKE_RENDER_STOP_AFTER")
    if stop is not None:
        job.blocks_done = getattr(job, "blocks_done", 0) + 1
        if job.blocks_done >= int(stop):
            raise KeyboardInterrupt


def _gallery(job: Render) -> None:
    """Refresh the gallery page of the checkpoint's run, when the checkpoint lies in a run directory."""
    run = RunFolder.of_checkpoint(Path(job.params["checkpoint"]))
    if run is not None and (page := callbacks.build(run, lambda msg: print(msg, file=sys.stderr))):
        print(f"gallery: {page}", file=sys.stderr)
