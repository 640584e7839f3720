import re

import pytest

from soundalike.config import Config, load_config, parse_duration, save_config
from soundalike.errors import UserError
from tests.conftest import CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.model.family in ("samplernn", "wavenet")


def test_overrides_are_typed_and_reach_nested_fields():
    cfg = load_config(None, ["train.batch_size=32", "model.frame_sizes=[2, 4]", "train.seq_len=512",
                             "train.lr=3e-4", "model.skip_connections=true"])
    assert cfg.train.batch_size == 32 and cfg.model.frame_sizes == [2, 4] and cfg.train.seq_len == 512
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.model.skip_connections is True


@pytest.mark.parametrize("override, message", [
    ("train.batchsize=3", "train.batchsize: unknown key"),
    ("train.batch_size=abc", "train.batch_size: expected an integer"),
    ("train.batch_size=true", "train.batch_size: expected an integer"),
    ("model.frame_sizes=16", "model.frame_sizes: expected a list"),
    ("model.frame_sizes=[16, x]", "model.frame_sizes[1]: expected an integer"),
    ("model.rnn_type=rnn", "model.rnn_type: expected gru or lstm"),
    ("train.seq_len=1000", "train.seq_len: must be a multiple of the top frame size 64"),
    ("train.max_time=soon", "train.max_time: expected a duration"),
    ("nonsense", "expected KEY=VALUE"),
    ("model.n_stacks=3", "model.n_stacks: unknown key for family samplernn (known: family, output, mixtures, frame_sizes, dim"),
    ("model.family=rnn", "model.family: unknown family 'rnn' (known: samplernn, wavenet)"),
    ("model.family=[rnn]", "model.family: unknown family"),
    ("model=3", "model: expected a mapping"),
    ("data.pre_emphasis=1", "data.pre_emphasis: must be at least 0 (0: off) and below 1, got 1.0"),
    ("data.pre_emphasis=-0.5", "data.pre_emphasis: must be at least 0 (0: off) and below 1, got -0.5"),
    ("train.input_noise=-1", "train.input_noise: must be between 0 and 64 levels, got -1.0"),
    ("data.pre_emphasis=.nan", "data.pre_emphasis: expected a finite number"),
    ("data.pre_emphasis=high", "data.pre_emphasis: expected a number"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(None, [override])


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("train:\n  batch_size: 4\n  bogus: 1\n")
    with pytest.raises(UserError, match="train.bogus: unknown key"):
        load_config(p)
    p.write_text("model:\n  family: wavenet\n  n_stacks: 2\n  frame_sizes: [16]\n")
    with pytest.raises(UserError, match=r"^model.frame_sizes: unknown key for family wavenet \(known: family, output, mixtures, n_stacks"):
        load_config(p)
    p.write_text("train: [1, 2")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_pre_emphasis_defaults_to_off_and_takes_a_coefficient():
    assert load_config(None).data.pre_emphasis == 0.0
    assert load_config(None, ["data.pre_emphasis=0.85"]).data.pre_emphasis == 0.85
    assert load_config(None, ["data.pre_emphasis=0"]).data.pre_emphasis == 0.0


def test_durations():
    assert parse_duration("3d") == 3 * 86400 and parse_duration("90m") == 5400
    assert parse_duration("600") == 600 and parse_duration("") is None


def test_digest_depends_on_model_not_training():
    a, b = Config(), Config()
    b.train.batch_size = 7
    assert a.digest() == b.digest()
    b.model.dim = 7
    assert a.digest() != b.digest()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_saved_config_loads_back_the_same(path, tmp_path):
    cfg = load_config(path)
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and type(again.model) is type(cfg.model)
    assert next(iter(again.to_dict()["model"])) == "family"


def test_model_family_picks_the_section_dataclass_and_its_defaults():
    assert Config().model.family == "samplernn"  # the first registered family is the default
    cfg = load_config(None, ["model.family=wavenet", "model.n_stacks=2"])
    assert cfg.model.family == "wavenet" and cfg.model.n_stacks == 2 and cfg.model.n_layers == 10
    assert cfg.to_dict()["model"] == {"family": "wavenet", **{k: getattr(cfg.model, k) for k in (
        "output", "mixtures", "n_stacks", "n_layers", "residual_channels", "dilation_channels", "skip_channels", "out_channels",
        "kernel_size", "level_input")}}
