"""The whole user path through the real commands, at toy size: corpus -> slice -> train -> evaluate ->
render -> gallery, each as a subprocess the way a user runs it."""

import json
import subprocess
import sys

import soundfile as sf

from tests.conftest import ROOT


def run(*argv, cwd):
    proc = subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_corpus_slice_train_evaluate_render_gallery(tmp_path):
    cli = ["-m", "soundalike.cli"]
    run(*cli, "demo-corpus", "--out", "raw", "--minutes", "0.6", cwd=tmp_path)
    run(ROOT / "tools" / "slice.py", "raw", "--out", "dataset", "--sample-rate", "8000", "--chunk-seconds", "2",
        "--overlap-seconds", "0", "--region-seconds", "4", cwd=tmp_path)
    manifest = json.loads((tmp_path / "dataset" / "manifest.json").read_text())
    assert {c["split"] for c in manifest["chunks"]} == {"train", "valid", "test"}

    sets = ["data.path=dataset", "model.dim=32", "model.emb_size=16", "model.frame_sizes=[4,2]",
            "train.batch_size=8", "train.seq_len=64", "train.val_every=10", "train.sample_count=1",
            "train.sample_seconds=0.1"]
    run(ROOT / "train.py", "--config", ROOT / "configs" / "demo.yaml", "--max-steps", "20",
        *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    run_dir = tmp_path / "runs" / "demo"
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "gallery.html").is_file()

    out = run(*cli, "evaluate", "--ckpt", run_dir / "checkpoints" / "best.pt", "--split", "test", "--json",
              cwd=tmp_path)
    result = json.loads(out)
    assert 0 < result["bits"] < 8

    # No --ckpt: the best checkpoint of the most recent run
    run(ROOT / "render.py", "--seconds", "0.5", "--count", "2", "--seed", "3", cwd=tmp_path)
    renders = sorted((tmp_path / "renders" / "demo").glob("*/track-*.wav"))
    assert len(renders) == 2
    info = sf.info(str(renders[0]))
    assert info.samplerate == 8000 and info.frames == 4000
