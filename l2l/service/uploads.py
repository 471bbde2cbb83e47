"""Uploaded datasets: checked before any search starts, stored only when they pass.

Three formats: a CSV with a named target column, a NumPy ``.npz`` with arrays ``x`` and
``y``, or a ``.zip`` of image folders (one folder per class), which is decoded once here
and kept as an ``.npz``. Every problem is a :class:`~l2l.service.datasets.DatasetError` whose
message says what to fix; a failed upload leaves no file and no row behind.
"""

from __future__ import annotations

import io
import shutil
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from l2l.service import datasets
from l2l.service.datasets import MIN_ROWS, DatasetError
from l2l.service.preprocessing import as_number, is_missing
from l2l.settings import Settings
from l2l.store import Store
from l2l.store.records import DatasetRecord

CHUNK = 1 << 20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: Images are resized to at most this many pixels a side: searches train on small images.
MAX_IMAGE_SIDE = 64


class UploadTooLarge(DatasetError):
    pass


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
    suffix = Path(filename or "").suffix.lower()
    if suffix not in (".csv", ".npz", ".zip"):
        raise DatasetError(
            f"cannot use {filename!r}: upload a .csv (with a target column), "
            "a .npz with arrays x and y, or a .zip of image folders (one folder per class)"
        )
    if suffix == ".csv" and not target:
        raise DatasetError("a CSV upload needs 'target', the name of the column to predict")
    folder = settings.data_dir.resolve() / "datasets" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        raw = folder / f"upload{suffix}"
        _copy_limited(stream, raw, settings.api.max_upload_mb)
        if suffix == ".csv":
            spec, summary = _check_csv(raw, target or "", task)
        elif suffix == ".npz":
            spec, summary = _check_npz(raw, task)
        else:
            spec, summary = _images_to_npz(raw, folder / "images.npz")
            raw.unlink()
        spec["split_seed"] = 0  # split once: every job on this dataset sees the same parts
        return store.create_dataset(team_id, name or Path(filename).stem, spec, summary)
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


def _check_csv(path: Path, target: str, task: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    given: dict[str, Any] = {"name": "csv", "path": str(path), "target": target}
    if task:
        given["task"] = task
    try:
        spec = datasets.check_dataset_spec(given)
    except DatasetError as error:
        # The stored file's name means nothing to the user; speak of "the CSV".
        raise DatasetError(str(error).replace(str(path), "the CSV")) from None
    loaded = datasets.load_dataset(spec)
    header, rows = datasets.read_csv(str(path))
    columns = {}
    for index, column in enumerate(header):
        cells = [row[index] for row in rows]
        missing = sum(is_missing(cell) for cell in cells)
        numeric = all(as_number(c) is not None for c in cells if not is_missing(c))
        columns[column] = {"type": "number" if numeric else "text", "missing": missing}
    summary = {
        "format": "csv",
        "rows": len(rows),
        "columns": columns,
        "target": target,
        "task": spec["task"],
        "classes": list(loaded.class_names),
        "features": len(loaded.feature_names),
    }
    return spec, summary


def _check_npz(path: Path, task: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise DatasetError(f"the .npz needs arrays named x and y; it has {sorted(arrays.files)}")
            x, y = arrays["x"], arrays["y"]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"cannot read the .npz file: {error}") from None
    if x.ndim < 2 or len(x) != len(y) or y.ndim != 1:
        raise DatasetError(
            f"x must have one row per example and y one label each; got x {x.shape} and y {y.shape}"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"x must hold numbers, not {x.dtype}")
    kind = "image" if x.ndim in (3, 4) else "tabular"
    guessed = datasets.guess_task([str(v) for v in y.tolist()])
    spec = {"name": "npz", "path": str(path), "kind": kind, "task": task or guessed}
    return spec, _check_labels(y.tolist(), spec, {"format": "npz", "shape": list(x.shape)})


def _images_to_npz(archive: Path, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise DatasetError("the .zip file cannot be read (is it a zip archive?)") from None
    images, labels, skipped = [], [], 0
    with bundle:
        for entry in sorted(bundle.namelist()):
            parts = [p for p in entry.split("/") if p and not p.startswith(".") and p != "__MACOSX"]
            if entry.endswith("/") or len(parts) < 2 or len(parts) != len(entry.strip("/").split("/")):
                continue
            if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                skipped += 1
                continue
            try:
                image = Image.open(io.BytesIO(bundle.read(entry)))
                image.load()
            except (UnidentifiedImageError, OSError) as error:
                raise DatasetError(f"{entry} in the zip is not a readable image: {error}") from None
            images.append(image)
            labels.append(parts[-2])  # the folder an image sits in is its class
    if not images:
        raise DatasetError("the zip has no images in class folders; put each class's images in a folder")
    grey = all(image.mode in ("L", "1", "I;16") for image in images)
    sizes = Counter(image.size for image in images)
    width, height = sizes.most_common(1)[0][0]
    scale = min(1.0, MAX_IMAGE_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    x = np.stack(
        [np.asarray(image.convert("L" if grey else "RGB").resize(size), dtype=np.uint8) for image in images]
    )
    if grey:
        x = x[..., np.newaxis]
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
