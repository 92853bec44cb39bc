"""Data sets: shapes, seeds, splits, the sampler's state, and every bad-input error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowkit.data import (
    BUILTIN_DATASETS,
    TOY_DATASETS,
    BatchSampler,
    load_array,
    load_dataset,
    sample_toy,
)
from flowkit.errors import InvalidInputError


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_density_shape_and_seed(name: str) -> None:
    x = sample_toy(name, 1000, seed=3, dtype=torch.float64)
    assert x.shape == (1000, 2)
    assert bool(torch.isfinite(x).all())
    assert torch.equal(x, sample_toy(name, 1000, seed=3, dtype=torch.float64))
    assert not torch.equal(x, sample_toy(name, 1000, seed=4, dtype=torch.float64))
    assert 0.5 < float(x.std()) < 3.0  # on the scale of FFJORD's plots, about [-4, 4]^2


def test_eight_gaussians_matches_its_closed_form_entropy() -> None:
    # The mixture's density is known: 8 components on a circle of radius 4/sqrt(2),
    # std 0.5/sqrt(2). Its entropy, log 8 + log(2 pi e sigma^2) = 2.838 nats (the
    # components barely overlap), is the NLL a perfect model reaches.
    x = sample_toy("8gaussians", 20_000, seed=0, dtype=torch.float64)
    sigma = 0.5 / math.sqrt(2)
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = (4 / math.sqrt(2)) * torch.stack([angles.cos(), angles.sin()], 1)
    sq = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    logp = torch.logsumexp(-sq / (2 * sigma**2), dim=1) - math.log(8 * 2 * math.pi * sigma**2)
    nll = -logp
    entropy = math.log(8) + math.log(2 * math.pi * math.e * sigma**2)
    se = float(nll.std()) / math.sqrt(len(nll))
    assert abs(float(nll.mean()) - entropy) < 4 * se


def test_checkerboard_lives_on_black_squares() -> None:
    x = sample_toy("checkerboard", 5000, seed=1, dtype=torch.float64)
    cells = torch.floor(x / 2).long()  # 2x2 squares of [-4, 4]^2
    assert bool((x.abs() <= 4).all())
    assert bool(((cells[:, 0] + cells[:, 1]) % 2 == 0).all())


def test_builtin_splits_shapes_and_disjointness() -> None:
    s = load_dataset("moons", seed=0, n_train=300, n_val=50, n_test=70)
    assert (s.train.shape, s.val.shape, s.test.shape) == ((300, 2), (50, 2), (70, 2))
    assert s.nll_offset == 0.0 and s.bits_per_dim(1.0) is None


def test_digits_shape_scaling_and_bits_per_dim() -> None:
    s = load_dataset("digits", seed=0)
    assert s.dim == 64 and s.image_shape == (8, 8)
    assert len(s.train) + len(s.val) + len(s.test) == 1797
    assert len(s.val) == len(s.test) == 180
    for split in (s.train, s.val, s.test):
        assert float(split.min()) >= -2.0 and float(split.max()) <= 2.0
    # Fresh dequantisation per batch: same pixels, different noise, within one grey level.
    g = torch.Generator().manual_seed(0)
    a, b = s.train_batch(torch.arange(10), g), s.train_batch(torch.arange(10), g)
    assert not torch.equal(a, b)
    assert float((s.to_data_space(a) - s.train_levels[:10]).max()) < 1.0 + 1e-5
    # A uniform density on the cube (-2, 2)^64 has NLL 64 log 4 in model space; in pixel
    # units that is uniform on [0, 17)^64: log2(17) bits per dimension.
    assert s.bits_per_dim(64 * math.log(4.0)) == pytest.approx(math.log2(17))


def test_builtin_names_cover_the_issue() -> None:
    expected = {
        "8gaussians",
        "pinwheel",
        "moons",
        "circles",
        "rings",
        "swissroll",
        "2spirals",
        "checkerboard",
        "digits",
    }
    assert set(BUILTIN_DATASETS) == expected


def test_user_npy_and_csv_load_and_standardize(tmp_path) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, size=(200, 3))
    np.save(tmp_path / "d.npy", values)
    header = "a,b,c\n" + "\n".join(",".join(f"{v:.17g}" for v in row) for row in values)
    (tmp_path / "d.csv").write_text(header + "\n")
    for name in ("d.npy", "d.csv"):
        s = load_dataset(tmp_path / name, seed=0, dtype=torch.float64)
        assert (len(s.train), len(s.val), len(s.test)) == (160, 20, 20)
        assert s.dim == 3
        assert torch.allclose(s.train.mean(0), torch.zeros(3), atol=1e-12)
        # NLL offset = log-determinant of the standardisation = sum log std.
        assert s.nll_offset == pytest.approx(float(torch.log(s.std).sum()))
        back = s.to_data_space(torch.cat([s.train, s.val, s.test]))
        assert back.shape == (200, 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"1,2\n3,nan\n4,5\n", "NaN or Inf"),
        (b"1,2\n3\n", "different numbers of columns"),
        (b"1,2\n3,x\n", "not a number"),
        (b"a,b\n", "header but no data"),
    ],
)
def test_bad_csv_errors(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=message):
        load_dataset(path)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(10), "2-D array"),
        (np.zeros((4, 2, 2)), "2-D array"),
        (np.zeros((0, 3)), "empty"),
        (np.array([[1.0, np.inf], [1.0, 2.0], [0.0, 1.0]]), "NaN or Inf"),
        (np.array([["a", "b"]]), "expected numbers"),
        (np.zeros((2, 2)), "at least 3"),
    ],
)
def test_bad_npy_errors(tmp_path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(InvalidInputError, match=message):
        load_dataset(path)


def test_file_errors(tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        load_array(tmp_path / "missing.npy")
    (tmp_path / "x.txt").write_text("1,2\n")
    with pytest.raises(InvalidInputError, match="unsupported file type"):
        load_array(tmp_path / "x.txt")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InvalidInputError, match=r"not a \.npy file"):
        load_array(tmp_path / "junk.npy")
    with pytest.raises(InvalidInputError, match="Unknown data set"):
        load_dataset("9gaussians")
    const = np.ones((30, 2))
    const[:, 0] = np.arange(30)
    np.save(tmp_path / "const.npy", const)
    with pytest.raises(InvalidInputError, match="constant"):
        load_dataset(tmp_path / "const.npy")


def test_sampler_state_round_trip() -> None:
    a = BatchSampler(10, 4, seed=0)
    for _ in range(3):
        a.next_indices()
    b = BatchSampler(10, 4, seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        assert torch.equal(a.next_indices(), b.next_indices())
    # Every epoch is a permutation: 10 batches of 4 cover each index exactly 4 times.
    c = BatchSampler(10, 4, seed=1)
    counts = torch.bincount(torch.cat([c.next_indices() for _ in range(10)]), minlength=10)
    assert torch.equal(counts, torch.full((10,), 4))
    with pytest.raises(ValueError, match="10 training samples"):
        BatchSampler(11, 4).load_state_dict(a.state_dict())


# -- delimiters, headers, misnamed files (the hardening issue) -------------------------------
_VALUES = np.array([[1.5, -2.0], [3.25, 4.0], [5.0, 6.5], [7.0, 8.0]])


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("header", [False, True])
def test_csv_delimiter_is_detected_and_no_row_is_dropped(
    tmp_path, delimiter: str, header: bool
) -> None:
    lines = [delimiter.join(f"{v:g}" for v in row) for row in _VALUES]
    if header:
        lines.insert(0, delimiter.join(["x", "y"]))
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(load_array(path), _VALUES)


def test_csv_first_line_with_numbers_is_data_or_an_error_never_dropped(tmp_path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("1.5;x\n3.25;4\n5;6.5\n")
    with pytest.raises(InvalidInputError, match=r"line 1, column 2 holds 'x'.*header"):
        load_array(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,5;2,0\n3,5;4,0\n", "cannot tell the column separator"),
        ("1;2\n3;4;5\n", "different numbers of columns"),
        ("x;y\n1,5;2\n3;4\n", r"line 2, column 1 holds '1,5'.*decimal point"),
    ],
)
def test_csv_ambiguous_or_european_files_are_refused(tmp_path, content: str, message) -> None:
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        load_array(path)


def test_text_file_named_npy_is_not_a_pickle_error(tmp_path) -> None:
    path = tmp_path / "d.npy"
    path.write_text("1,2\n3,4\n5,6\n")
    with pytest.raises(InvalidInputError, match=r"not a \.npy file.*suffix \.csv") as info:
        load_array(path)
    assert "allow_pickle" not in str(info.value)
    np.save(tmp_path / "objects.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match="holds Python objects"):
        load_array(tmp_path / "objects.npy")
    good = tmp_path / "good.npy"
    np.save(good, _VALUES)
    (tmp_path / "cut.npy").write_bytes(good.read_bytes()[:-8])
    with pytest.raises(InvalidInputError, match="corrupt or truncated"):
        load_array(tmp_path / "cut.npy")


def test_directory_named_like_a_data_file_is_not_reported_missing(tmp_path) -> None:
    (tmp_path / "x.csv").mkdir()
    with pytest.raises(InvalidInputError, match="a directory, not a file"):
        load_array(tmp_path / "x.csv")
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(InvalidInputError, match="not a text file"):
        load_array(tmp_path / "b.csv")


def test_standardising_huge_values_is_exact(tmp_path) -> None:
    """Values near 1e200 (whose variance overflows float64) standardise like small ones."""
    values = np.random.default_rng(3).normal(1.0, 2.0, size=(100, 2))
    np.save(tmp_path / "small.npy", values)
    np.save(tmp_path / "huge.npy", values * 1e200)
    small = load_dataset(tmp_path / "small.npy", dtype=torch.float64)
    huge = load_dataset(tmp_path / "huge.npy", dtype=torch.float64)
    torch.testing.assert_close(huge.train, small.train, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(huge.test, small.test, rtol=1e-12, atol=1e-12)
    # the log-determinant grows by d * log(1e200)
    assert huge.nll_offset == pytest.approx(small.nll_offset + 2 * 200 * np.log(10), rel=1e-12)
    assert np.isfinite(huge.nll_offset)


def test_values_beyond_the_dtype_are_refused_with_a_fix(tmp_path) -> None:
    np.save(tmp_path / "huge.npy", np.random.default_rng(0).normal(size=(50, 2)) * 1e60)
    with pytest.raises(InvalidInputError, match=r"do not fit float32.*--standardize"):
        load_dataset(tmp_path / "huge.npy", standardize=False, dtype=torch.float32)
    ok = load_dataset(tmp_path / "huge.npy", standardize=False, dtype=torch.float64)
    assert bool(torch.isfinite(ok.train).all())
