"""Each matrix product of the compiled sampling library against numpy (as LPCNet's test_vec.c), in float32 and
float64 with weights stored as such, as bfloat16 and as int8, at sizes that exercise the scalar tails (not
multiples of the vector width, one row, one column) and the prefetching blocks; and the loader's check of the
structs' layout."""

import ctypes
import warnings

import numpy as np
import pytest
import torch

from soundalike.sampling import compiler, kernel

# (rows, cols): one row / column; below, at and above the vector widths (8, 16 lanes; 2 vectors per step);
# rows not a multiple of the 4-row blocks; enough rows of short weights that the prefetch runs ahead.
SIZES = [(1, 1), (1, 37), (37, 1), (3, 5), (4, 16), (5, 31), (7, 32), (9, 33), (13, 64), (17, 100), (64, 64),
         (130, 257), (301, 64)]
DTYPES = [torch.float32, torch.float64]
WEIGHTS = ["full", "bf16", "int8"]


@pytest.fixture(scope="module")
def lib():
    lib = kernel.load()
    if lib is None:
        pytest.skip("no C++ compiler")
    yield lib
    lib.set_threads(1, kernel.MIN_SPLIT)


def stored(w: np.ndarray, weights: str, dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
    """w (rows, cols) stored as T or bfloat16, and the float64 values it stands for."""
    if weights == "full":
        t = torch.from_numpy(w).to(dtype)
        return t, t.double().numpy()
    if weights == "bf16":
        t = torch.from_numpy(w).to(torch.bfloat16)
        return t, t.double().numpy()
    raise AssertionError(weights)


def int8_stored(rows: int, cols: int, per_column: bool, rng) -> tuple[torch.Tensor, np.ndarray]:
    """Random int8 levels (rows, cols) with one float32 scale per output (a row, or a column of a transposed
    matrix), packed as the library reads them, and the float64 values they stand for."""
    q = torch.from_numpy(rng.integers(-127, 128, (rows, cols)).astype(np.int8))
    scale = torch.from_numpy(rng.uniform(0.001, 0.02, cols if per_column else rows).astype(np.float32))
    values = q.double().numpy() * (scale.double().numpy()[None, :] if per_column else scale.double().numpy()[:, None])
    return kernel.pack_int8(q, scale), values


def random_stored(rows: int, cols: int, weights: str, dtype: torch.dtype, rng,
                  per_column: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """Random weights (rows, cols) stored as `weights` (int8: one scale per row, or per column of a transposed
    matrix), and the float64 values they stand for."""
    if weights == "int8":
        return int8_stored(rows, cols, per_column, rng)
    return stored(rng.standard_normal((rows, cols)), weights, dtype)


def assert_sums_close(actual: torch.Tensor, expected: np.ndarray, magnitude: np.ndarray, n: int) -> None:
    """actual within the rounding error of a sum of n terms in its dtype: n * eps * (sum of |terms|) per output
    (the library sums in its own order, so it may differ from numpy's by that much, not more)."""
    eps = torch.finfo(actual.dtype).eps
    err = np.abs(actual.double().numpy() - expected)
    bound = (n + 2) * eps * magnitude
    assert (err <= bound).all(), f"max error {err.max():.3g}, bound there {bound.flat[err.argmax()]:.3g}"


def check_product(lib, mat, w64: np.ndarray, dtype, weights: str, rng) -> None:
    """The compiled product of `mat` (rows x cols, w64 the values it stores) against numpy, y = x W^T + b and
    through a ReLU, for 1 and 3 streams, with 1 thread and with 3 threads splitting every product (which must
    give bitwise the one-thread result)."""
    rows, cols = w64.shape
    b = torch.from_numpy(rng.standard_normal(rows)).to(dtype)
    for batch in (1, 3):
        x = torch.from_numpy(rng.standard_normal((batch, cols))).to(dtype)
        expected = x.double().numpy() @ w64.T + b.double().numpy()
        magnitude = np.abs(x.double().numpy()) @ np.abs(w64.T) + np.abs(b.double().numpy())
        for relu in (False, True):
            results = []
            for threads, min_split in [(1, -1), (3, 0)]:
                lib.set_threads(threads, min_split)
                y = torch.full((batch, rows), float("nan"), dtype=dtype)
                lib.lib.sl_test_gemv(kernel.DTYPES[dtype], kernel.WEIGHTS[weights], mat, b.data_ptr(),
                                     x.data_ptr(), batch, y.data_ptr(), int(relu))
                results.append(y)
            assert_sums_close(results[0], np.maximum(expected, 0) if relu else expected, magnitude, cols)
            assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("rows,cols", SIZES)
def test_gemv_matches_numpy(lib, rows, cols, dtype, weights):
    """y = x W^T + b (and through a ReLU) for 1 and 3 streams, with 1 thread and with 3 threads splitting
    every product; the split gives bitwise the one-thread result."""
    rng = np.random.default_rng(rows * 1000 + cols)
    w, w64 = random_stored(rows, cols, weights, dtype, rng)
    mat = kernel.matrix(w.contiguous(), rows, cols, weights)
    check_product(lib, mat, w64, dtype, weights, rng)


SPARSE_SIZES = [(1, 1), (1, 19), (19, 1), (5, 3), (37, 17), (64, 130), (100, 257), (48, 16)]


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("inputs,outputs", SPARSE_SIZES)
def test_gemv_sparse_matches_numpy(lib, inputs, outputs, dtype, weights):
    """The zero-skipping product y = x WT + b on a transposed matrix WT (inputs, outputs), with about half of
    x zero (as after a ReLU), with none zero and with all zero; 1 and 3 threads give the same bits."""
    rng = np.random.default_rng(inputs * 1000 + outputs)
    wt, wt64 = random_stored(inputs, outputs, weights, dtype, rng, per_column=True)
    mat = kernel.matrix(wt.contiguous(), inputs, outputs, weights)
    b = torch.from_numpy(rng.standard_normal(outputs)).to(dtype)
    nz = torch.empty(inputs, dtype=torch.int32)
    x_full = rng.standard_normal(inputs)
    for x_np in (np.maximum(x_full, 0), x_full + 10, np.zeros(inputs)):
        x = torch.from_numpy(x_np).to(dtype)
        expected = x.double().numpy() @ wt64 + b.double().numpy()
        magnitude = np.abs(x.double().numpy()) @ np.abs(wt64) + np.abs(b.double().numpy())
        for relu in (False, True):
            results = []
            for threads, min_split in [(1, -1), (3, 0)]:
                lib.set_threads(threads, min_split)
                y = torch.full((outputs,), float("nan"), dtype=dtype)
                lib.lib.sl_test_gemv_sparse(kernel.DTYPES[dtype], kernel.WEIGHTS[weights], mat, b.data_ptr(),
                                            x.data_ptr(), y.data_ptr(), int(relu), nz.data_ptr())
                results.append(y)
            assert_sums_close(results[0], np.maximum(expected, 0) if relu else expected, magnitude, inputs)
            assert torch.equal(results[0], results[1])


# (rows, cols): one row, one block (kept or not), a partial last group (rows not a multiple of 16), columns past
# the int16 range (the index holds them as uint16), and more rows of short weights.
BLOCK_SIZES = [(1, 20), (16, 1), (5, 37), (37, 50), (64, 64), (130, 257), (20, 40000)]


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("rows,cols", BLOCK_SIZES)
def test_block_sparse_gemv_matches_numpy(lib, rows, cols, dtype, weights):
    """The block-sparse product (16 x 1 blocks, most of them zero, some groups empty) against numpy on the values
    it stores, for 1 and 3 streams, with and without a ReLU; 1 and 3 threads give the same bits."""
    from soundalike.sampling.engine import compact

    rng = np.random.default_rng(rows * 1000 + cols)
    w = torch.from_numpy(rng.standard_normal((rows, cols))).to(dtype)
    w *= torch.from_numpy(rng.random((-(-rows // 16), cols)) < 0.15).repeat_interleave(16, 0)[:rows]
    if rows > 16:
        w[:16] = 0  # an empty group
    blocks = kernel.block_sparse(w, weights, dtype)
    assert blocks is not None and blocks.n_blocks == int(kernel.block_columns(w).sum())
    w64 = compact(w.double(), weights).numpy() if weights != "bf16" else w.to(torch.bfloat16).double().numpy()
    mat = kernel.matrix(blocks, rows, cols, weights)
    check_product(lib, mat, w64, dtype, weights, rng)


def test_a_dense_enough_matrix_is_not_stored_block_sparse():
    w = torch.randn(64, 64)
    assert kernel.block_sparse(w, "full", torch.float32) is None
    w[:, :int(64 * (1 - kernel.BLOCK_DENSITY)) + 1] = 0
    blocks = kernel.block_sparse(w, "int8", torch.float32)
    assert blocks is not None and kernel.stored_bytes(blocks) < w.numel()  # int8 blocks, index and scales


def test_library_reports_the_layout_python_mirrors(lib):
    assert kernel.layout_mismatches(lib.lib, kernel.STRUCTS) == []


def test_a_struct_that_differs_is_refused_loudly(lib, monkeypatch):
    """A field on one side only (here: the library's sl_matrix has `scale`, this mirror does not) is found,
    and load() then warns and returns None, so the callers fall back instead of reading the wrong bytes."""
    class Short(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("rows", ctypes.c_int32), ("cols", ctypes.c_int32)]

    bad = kernel.layout_mismatches(lib.lib, {"sl_matrix": Short, "sl_streams": kernel.Streams})
    assert len(bad) == 1 and bad[0].startswith("sl_matrix")
    assert kernel.layout_mismatches(lib.lib, {"no_such_struct": Short})  # an unknown name is a mismatch too
    monkeypatch.setattr(kernel, "_loaded", {})
    monkeypatch.setattr(kernel, "STRUCTS", {**kernel.STRUCTS, "sl_matrix": Short})
    with pytest.warns(RuntimeWarning, match="structs differ.*sl_matrix.*numpy"):
        assert kernel.load() is None
    monkeypatch.setattr(kernel, "_loaded", {})


def test_native_flags_per_architecture():
    assert compiler.native_flags("x86_64") == ["-march=native"]
    assert compiler.native_flags("aarch64") == ["-mcpu=native"]
    assert compiler.native_flags("arm64") == ["-mcpu=native"]
    assert compiler.native_flags("riscv64") == []


def test_developer_flags_are_appended_and_change_the_build_key(monkeypatch):
    cxx = compiler.shutil.which("g++") or compiler.shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    plain = compiler.flags()
    monkeypatch.setenv("SOUNDALIKE_CXXFLAGS", "-g -O1 -fsanitize=address")
    assert compiler.flags() == plain + ["-g", "-O1", "-fsanitize=address"]
    assert compiler.build_key(cxx, compiler.flags()) != compiler.build_key(cxx, plain)


def test_a_failed_build_keeps_the_sources_and_points_at_the_error(monkeypatch, tmp_path):
    """A source that does not compile: the warning names file:line of the real source and the kept folder,
    which holds the sources and the compiler's full output; the callers fall back."""
    cxx = compiler.shutil.which("g++") or compiler.shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    sources = tmp_path / "csrc"
    sources.mkdir()
    for p in compiler.source_files():
        (sources / p.name).write_bytes(p.read_bytes())
    broken = sources / "team.cpp"
    broken.write_text(broken.read_text() + "\nint broken() { return undeclared_name; }\n")
    line = len(broken.read_text().splitlines())
    monkeypatch.setattr(compiler, "SOURCES", sources)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compiler.load("sampling", "the fallback") is None
    message = str(caught[-1].message)
    assert f"{broken}:{line}:" in message and "undeclared_name" in message and message.endswith("the fallback")
    kept = next((tmp_path / "cache" / "soundalike" / "kernels").glob("failed-*"))
    assert str(kept) in message
    assert (kept / "team.cpp").read_text() == broken.read_text()
    assert "undeclared_name" in (kept / "compiler.log").read_text()
