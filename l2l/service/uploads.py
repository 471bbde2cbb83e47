"""Uploaded datasets: checked before any search starts, stored only when they pass.

Three formats: a CSV with a named target column, a NumPy ``.npz`` with arrays ``x`` and
``y``, or a ``.zip`` of image folders (one folder per class), which is decoded once here
and kept as an ``.npz``. Every problem is a :class:`~l2l.service.datasets.DatasetError` whose
message says what to fix; a failed upload leaves no file and no row behind.
"""

from __future__ import annotations

import io
import math
import shutil
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from l2l.service import datasets
from l2l.service.datasets import MIN_ROWS, DatasetError
from l2l.service.preprocessing import as_number, is_missing
from l2l.settings import Settings, UploadSettings
from l2l.store import Store
from l2l.store.records import DatasetRecord

CHUNK = 1 << 20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: Images are resized to at most this many pixels a side: searches train on small images.
MAX_IMAGE_SIDE = 64


class UploadTooLarge(DatasetError):
    pass


class Deadline:
    """The time an upload's check may take; :meth:`check` raises once it has passed.

    The check runs in a worker thread (a thread cannot be killed), so its loops call
    :meth:`check` between rows and files and stop themselves.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise DatasetError(f"checking the upload took more than {self.seconds:g} s, this service's limit")


def save_upload(
    store: Store,
    settings: Settings,
    team_id: int,
    filename: str,
    stream: BinaryIO,
    *,
    name: str | None = None,
    target: str | None = None,
    task: str | None = None,
) -> DatasetRecord:
    """Check an upload against the limits of ``settings.uploads`` and keep it for the team.

    Every size (bytes, decompressed bytes, files in a zip, pixels, rows, columns, cells) is
    checked from headers or while streaming, before the memory it would take is spent.
    """
    suffix = Path(filename or "").suffix.lower()
    if suffix not in (".csv", ".npz", ".zip"):
        raise DatasetError(
            f"cannot use {filename[:100]!r}: upload a .csv (with a target column), "
            "a .npz with arrays x and y, or a .zip of image folders (one folder per class)"
        )
    if suffix == ".csv" and not target:
        raise DatasetError("a CSV upload needs 'target', the name of the column to predict")
    limits = settings.uploads
    deadline = Deadline(limits.max_seconds)
    folder = settings.data_dir.resolve() / "datasets" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        raw = folder / f"upload{suffix}"
        _copy_limited(stream, raw, settings.api.max_upload_mb)
        if suffix == ".csv":
            spec, summary = _check_csv(raw, target or "", task, limits, deadline)
        elif suffix == ".npz":
            spec, summary = _check_npz(raw, task, limits)
        else:
            spec, summary = _images_to_npz(raw, folder / "images.npz", limits, deadline)
            raw.unlink()
        spec["split_seed"] = 0  # split once: every job on this dataset sees the same parts
        title = (name or Path(filename).stem or "dataset")[:200]
        return store.create_dataset(team_id, title, spec, summary)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def chunks_up_to(
    stream: BinaryIO, limit_mb: float, too_large: Callable[[str], Exception], what: str = "the upload"
) -> Iterator[bytes]:
    """The stream in chunks, raising ``too_large(message)`` once more than ``limit_mb`` came:
    an upload is never held or written whole before its size is known to be allowed."""
    limit = int(limit_mb * (1 << 20))
    size = 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(f"{what} is larger than {limit_mb:g} MB, this service's limit")
        yield chunk


def _copy_limited(stream: BinaryIO, path: Path, limit_mb: float) -> None:
    written = 0
    with path.open("wb") as out:
        for chunk in chunks_up_to(stream, limit_mb, UploadTooLarge):
            written += len(chunk)
            out.write(chunk)
    if written == 0:
        raise DatasetError("the uploaded file is empty")


def _check_csv(
    path: Path, target: str, task: str | None, limits: UploadSettings, deadline: Deadline
) -> tuple[dict[str, Any], dict[str, Any]]:
    if task is not None and task not in datasets.TASKS:
        raise DatasetError(f"task must be one of {', '.join(datasets.TASKS)}")
    header, rows = datasets.read_csv(
        str(path), limits.max_rows, limits.max_columns, limits.max_csv_cells, deadline.check
    )
    spec = {"name": "csv", "path": str(path), **datasets.check_csv_rows(header, rows, target, task)}
    columns = {}
    for index, column in enumerate(header):
        cells = [row[index] for row in rows]
        missing = sum(is_missing(cell) for cell in cells)
        numeric = all(as_number(c) is not None for c in cells if not is_missing(c))
        columns[column] = {"type": "number" if numeric else "text", "missing": missing}
        if index % 100 == 0:
            deadline.check()
    row_count = len(rows)
    del rows
    loaded = datasets.load_dataset(spec)
    deadline.check()
    summary = {
        "format": "csv",
        "rows": row_count,
        "columns": columns,
        "target": target,
        "task": spec["task"],
        "classes": list(loaded.class_names),
        "features": len(loaded.feature_names),
    }
    return spec, summary


def _zip_members(bundle: zipfile.ZipFile, limits: UploadSettings, what: str) -> list[zipfile.ZipInfo]:
    """The archive's members, refused from its directory alone if there are too many or they
    unpack to more than the limit (reads stop at each member's declared size, so it holds)."""
    members = bundle.infolist()
    if len(members) > limits.max_zip_members:
        raise DatasetError(
            f"{what} has {len(members)} files; this service takes at most {limits.max_zip_members}"
        )
    unpacked = sum(member.file_size for member in members)
    if unpacked > limits.max_unzipped_mb * (1 << 20):
        raise DatasetError(
            f"{what} unpacks to {unpacked / (1 << 20):.0f} MB; this service takes at most "
            f"{limits.max_unzipped_mb:g} MB"
        )
    return members


def _npy_header(bundle: zipfile.ZipFile, member: zipfile.ZipInfo) -> tuple[tuple[int, ...], Any]:
    """Shape and dtype of an ``.npy`` member, read from its header: no data is loaded."""
    import numpy as np

    with bundle.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    return tuple(int(d) for d in shape), dtype


def _check_npz(path: Path, task: str | None, limits: UploadSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ``.npz`` checked from its arrays' headers: ``x`` is never loaded here, only ``y``."""
    import numpy as np

    if task is not None and task not in datasets.TASKS:
        raise DatasetError(f"task must be one of {', '.join(datasets.TASKS)}")
    try:
        with zipfile.ZipFile(path) as bundle:
            members = {m.filename: m for m in _zip_members(bundle, limits, "the .npz")}
            if "x.npy" not in members or "y.npy" not in members:
                names = sorted(n.removesuffix(".npy") for n in members)[:20]
                raise DatasetError(f"the .npz needs arrays named x and y; it has {names}")
            x_shape, x_dtype = _npy_header(bundle, members["x.npy"])
            y_shape, y_dtype = _npy_header(bundle, members["y.npy"])
            _check_array_sizes(x_shape, x_dtype, y_shape, y_dtype, members["x.npy"], limits)
            y = np.load(bundle.open(members["y.npy"]), allow_pickle=False)
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError):
        # Messages from numpy or zipfile can quote the header's bytes: say it in general words.
        raise DatasetError(
            "cannot read the .npz file (save it with numpy.savez with arrays x and y)"
        ) from None
    kind = "image" if len(x_shape) in (3, 4) else "tabular"
    labels = y.tolist()
    guessed = datasets.guess_task([str(v) for v in labels])
    spec = {"name": "npz", "path": str(path), "kind": kind, "task": task or guessed}
    return spec, _check_labels(labels, spec, {"format": "npz", "shape": list(x_shape)})


def _check_array_sizes(
    x_shape: tuple[int, ...],
    x_dtype: Any,
    y_shape: tuple[int, ...],
    y_dtype: Any,
    x_member: zipfile.ZipInfo,
    limits: UploadSettings,
) -> None:
    import numpy as np

    if len(x_shape) < 2 or len(y_shape) != 1 or x_shape[0] != y_shape[0]:
        raise DatasetError(
            "x must have one row per example and y one label each; "
            f"got x {list(x_shape)} and y {list(y_shape)}"
        )
    if x_dtype.hasobject or y_dtype.hasobject:
        raise DatasetError("the arrays must hold numbers (x) and numbers or strings (y), not Python objects")
    if not np.issubdtype(x_dtype, np.number):
        raise DatasetError(f"x must hold numbers, not {x_dtype}")
    rows, cells = x_shape[0], math.prod(x_shape)
    if rows > limits.max_rows:
        raise DatasetError(f"the .npz has {rows} rows; this service takes at most {limits.max_rows}")
    if cells > limits.max_cells:
        raise DatasetError(f"x has {cells} values; this service takes at most {limits.max_cells}")
    if cells * x_dtype.itemsize > x_member.file_size:
        raise DatasetError("x is shorter than its header says; the .npz is damaged")


def _images_to_npz(
    archive: Path, out: Path, limits: UploadSettings, deadline: Deadline
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode a zip of class folders into one small ``.npz``, one image in memory at a time.

    The zip's directory is checked first (files, unpacked size); then every image's size is
    read from its header (no decoding) and refused past the pixel limit; only then is each
    image decoded, shrunk to at most :data:`MAX_IMAGE_SIDE` a side and its pixels dropped.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise DatasetError("the .zip file cannot be read (is it a zip archive?)") from None
    found: list[tuple[zipfile.ZipInfo, str, tuple[int, int], str]] = []
    skipped = 0
    unreadable = (UnidentifiedImageError, OSError, ValueError, EOFError)
    with bundle:
        for member in sorted(_zip_members(bundle, limits, "the zip"), key=lambda m: m.filename):
            entry = member.filename
            parts = [p for p in entry.split("/") if p and not p.startswith(".") and p != "__MACOSX"]
            if entry.endswith("/") or len(parts) < 2 or len(parts) != len(entry.strip("/").split("/")):
                continue
            if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                skipped += 1
                continue
            deadline.check()
            try:
                with bundle.open(member) as handle, Image.open(handle) as image:  # reads the header only
                    size, mode = image.size, image.mode
            except Image.DecompressionBombError:  # PIL's own guard, far above ours
                size, mode = (limits.max_image_pixels + 1, 1), ""
            except unreadable:
                raise DatasetError(f"{entry[:200]} in the zip is not a readable image") from None
            if size[0] * size[1] > limits.max_image_pixels:
                raise DatasetError(
                    f"{entry[:200]} in the zip is {size[0]}x{size[1]} pixels; this service takes "
                    f"images of at most {limits.max_image_pixels} pixels"
                )
            found.append((member, parts[-2], size, mode))  # the folder an image sits in is its class
        if not found:
            raise DatasetError("the zip has no images in class folders; put each class's images in a folder")
        grey = all(mode in ("L", "1", "I;16") for *_, mode in found)
        width, height = Counter(size for _, _, size, _ in found).most_common(1)[0][0]
        scale = min(1.0, MAX_IMAGE_SIDE / max(width, height))
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = []
        for member, _, _, _ in found:
            deadline.check()
            try:
                with bundle.open(member) as handle, Image.open(handle) as image:
                    small = image.convert("L" if grey else "RGB").resize(target)
            except unreadable:
                raise DatasetError(f"{member.filename[:200]} in the zip is not a readable image") from None
            pixels.append(np.asarray(small, dtype=np.uint8))
    x = np.stack(pixels)
    if grey:
        x = x[..., np.newaxis]
    labels = [label for _, label, _, _ in found]
    np.savez_compressed(out, x=x, y=np.asarray(labels))
    spec = {"name": "npz", "path": str(out), "kind": "image", "task": "classification"}
    summary = {"format": "images", "shape": list(x.shape), "skipped_files": skipped}
    return spec, _check_labels(labels, spec, summary)


def _check_labels(labels: list[Any], spec: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    if len(labels) < MIN_ROWS:
        raise DatasetError(f"the dataset has {len(labels)} examples; at least {MIN_ROWS} are needed")
    counts = Counter(str(label) for label in labels)
    if spec["task"] == "classification" and len(counts) < 2:
        raise DatasetError(f"every example has the same label {next(iter(counts))!r}; nothing to learn")
    summary = {**summary, "rows": len(labels), "task": spec["task"]}
    if spec["task"] == "classification":
        summary["classes"] = {label: counts[label] for label in sorted(counts)}
    return summary


def image_rows(filename: str, content: bytes, input_shape: list[int]) -> tuple[list[str], list[Any]]:
    """Raw pixels of one image, or of every image in a zip, for a model of ``input_shape``
    (height, width, channels): each converted and resized the way the upload check did its
    training images. Returns the images' names (sorted, for a zip) and their pixels."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if len(input_shape) != 3 or input_shape[2] not in (1, 3):
        raise DatasetError(f"this model takes inputs of shape {input_shape}, not images")
    height, width, channels = input_shape
    if filename.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as bundle:
                names = sorted(
                    n
                    for n in bundle.namelist()
                    if n.lower().endswith(IMAGE_SUFFIXES) and not any(p.startswith(".") for p in n.split("/"))
                )
                images = [(name, bundle.read(name)) for name in names]
        except zipfile.BadZipFile:
            raise DatasetError("the .zip file cannot be read (is it a zip archive?)") from None
        if not images:
            raise DatasetError(f"the zip has no images ({', '.join(IMAGE_SUFFIXES)})")
    else:
        images = [(filename, content)]
    rows = []
    for name, data in images:
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError):
            raise DatasetError(f"{name} is not a readable image") from None
        converted = image.convert("L" if channels == 1 else "RGB").resize((width, height))
        pixels = np.asarray(converted, dtype=np.uint8).reshape(height, width, channels)
        rows.append(pixels.tolist())
    return [name for name, _ in images], rows
