"""Small inputs cannot cost large amounts: bombs of every kind against a real API process.

The API runs in its own process (``tests/memory_server.py``) so that its peak resident memory
can be read when it stops; every bomb must be refused with a 4xx and the peak stay under
300 MB. Bodies without a key are answered before they are sent: the client sends a few MB
of a body that says it is 1 GB, and the 401 comes back anyway.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import HANG_SECONDS, free_port
from PIL import Image

from l2l.service.jobs import create_team
from l2l.store import Store

ROOT = Path(__file__).resolve().parents[1]
PEAK_LIMIT_MB = 300
UPLOAD_LIMIT_MB = 400  # above the zip bomb's size: the unpacked-size limit must catch it


class ApiProcess:
    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.port = free_port()
        self.rss_file = tmp_path / "rss.txt"
        settings = {"api": {"port": self.port, "max_upload_mb": UPLOAD_LIMIT_MB}}
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "memory_server.py"),
                str(tmp_path),
                store.url,
                str(self.port),
                str(self.rss_file),
                json.dumps(settings),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + HANG_SECONDS
        while True:
            try:  # /health/live: /health itself waits for a controller, and none runs here
                if httpx.get(f"{self.url}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the API process did not start")
            time.sleep(0.2)

    def peak_rss_mb(self) -> float:
        """Stop the process and read its peak resident memory."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        return int(self.rss_file.read_text()) / 1024


@pytest.fixture
def api(sqlite_store: Store, tmp_path: Path) -> Iterator[tuple[ApiProcess, str]]:
    _, key = create_team(sqlite_store, "alpha")
    server = ApiProcess(sqlite_store, tmp_path)
    try:
        yield server, key
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, content in members.items():
            bundle.writestr(name, content)
    return buffer.getvalue()


def _zip_of_zeros(name: str, megabytes: int) -> bytes:
    """A zip whose one member unpacks to ``megabytes`` of zeros (about 1000:1)."""
    buffer = io.BytesIO()
    zeros = bytes(1 << 20)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle,
        bundle.open(name, "w", force_zip64=True) as member,
    ):
        for _ in range(megabytes):
            member.write(zeros)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that says it is width x height pixels, with one row of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy_header_only(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_2_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def _upload(url: str, key: str, name: str, content: bytes, **form: str) -> httpx.Response:
    return httpx.post(
        f"{url}/datasets",
        files={"file": (name, content)},
        data=form,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )


def _status_line(sock: socket.socket) -> str:
    answer = b""
    while b"\r\n" not in answer:
        piece = sock.recv(4096)
        if not piece:
            break
        answer += piece
    return answer.split(b"\r\n", 1)[0].decode()


def _post_without_reading_answer(
    port: int, headers: dict[str, str], send_mb: int, chunked: bool = False
) -> str:
    """Send a POST's headers and up to ``send_mb`` of body, then read the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
        # A well-formed start of a file field, so that only the size can be what is refused.
        start = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        block = b"x" * (1 << 20)
        for number in range(send_mb):
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered: stop sending
            piece = start + block if number == 0 else block
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
            except OSError:
                break  # the server stopped reading and closed
        return _status_line(sock)


@pytest.mark.timeout(600)
def test_bombs_are_refused_and_the_api_stays_under_300_mb(api: tuple[ApiProcess, str]) -> None:
    server, key = api
    url = server.url

    # A body without a key: it says 1 GB; 8 MB are sent; the 401 comes back without the rest.
    no_key = {"Content-Length": str(1 << 30), "Content-Type": "multipart/form-data; boundary=x"}
    assert " 401 " in _post_without_reading_answer(server.port, no_key, send_mb=8)
    # With a key and a declared size over the limit: 413 at once.
    too_big = {**no_key, "Authorization": f"Bearer {key}", "Content-Length": str((UPLOAD_LIMIT_MB + 1) << 20)}
    assert " 413 " in _post_without_reading_answer(server.port, too_big, send_mb=8)
    # With a key and no declared size: counted while it streams, refused once past the limit.
    chunked = {**too_big, "Transfer-Encoding": "chunked"}
    chunked.pop("Content-Length")
    assert " 413 " in _post_without_reading_answer(
        server.port, chunked, send_mb=UPLOAD_LIMIT_MB + 64, chunked=True
    )

    # A zip that unpacks to 300 MB of zeros (300 KB sent).
    bomb = _zip_of_zeros("cats/a.png", 300)
    response = _upload(url, key, "bomb.zip", bomb)
    assert response.status_code == 422 and "unpacks to" in response.json()["detail"]
    # More files than the limit (each empty).
    many = _zip({f"cats/{i}.png": b"" for i in range(10_001)})
    response = _upload(url, key, "many.zip", many)
    assert response.status_code == 422 and "10001 files" in response.json()["detail"]
    # A PNG that says it is 100,000 x 100,000 pixels, and one of 9000 x 9000.
    for width in (100_000, 9000):
        images = _zip({"cats/huge.png": _png_header(width, width), "dogs/small.png": _png(8, 8)})
        response = _upload(url, key, "huge.zip", images)
        assert response.status_code == 422 and "pixels" in response.json()["detail"], response.text
    # Images at the pixel limit are decoded one at a time (and refused for being one class).
    allowed = _zip({f"cats/{i}.png": _png(4096, 4096) for i in range(3)})
    response = _upload(url, key, "allowed.zip", allowed)
    assert response.status_code == 422 and "at least 10" in response.json()["detail"], response.text
    # An npz whose header declares 10^12 rows.
    npz = _zip({"x.npy": _npy_header_only((10**12, 8)), "y.npy": _npy_header_only((10**12,))})
    response = _upload(url, key, "rows.npz", npz)
    assert response.status_code == 422 and "rows" in response.json()["detail"], response.text
    # An npz of 1 GB of zeros in a 1 MB file.
    zeros = _zip_of_zeros("x.npy", 1024)
    assert _upload(url, key, "zeros.npz", zeros).status_code == 422
    # A CSV with 100,000 columns: refused from a linear scan of its bytes.
    header = ",".join(f"c{i}" for i in range(100_000))
    wide = (
        header + "\n" + "\n".join(",".join("1" for _ in range(100_000)) for _ in range(12)) + "\n"
    ).encode()
    response = _upload(url, key, "wide.csv", wide, target="c0")
    assert response.status_code == 422 and "columns" in response.json()["detail"]

    # The same process still serves good uploads (the refusals above are not a dead server).
    rows = "a,b,label\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(50))
    assert _upload(url, key, "fine.csv", rows.encode(), target="label").status_code == 201
    peak = server.peak_rss_mb()
    print(f"peak RSS of the API process: {peak:.0f} MB")
    assert peak < PEAK_LIMIT_MB


@pytest.mark.timeout(120)
def test_a_csv_of_100k_columns_is_checked_in_linear_time(tmp_path: Path) -> None:
    """The old duplicate-column check was quadratic (19.5 minutes); with the column limit
    raised out of the way, the header is checked in one pass (pytest-timeout is the bound)."""
    from l2l.service.datasets import DatasetError, read_csv

    path = tmp_path / "wide.csv"
    names = [f"c{i}" for i in range(100_000)]
    path.write_text(",".join([*names, "c5"]) + "\n" + ",".join("1" for _ in range(100_001)) + "\n")
    with pytest.raises(DatasetError, match="repeats the columns c5"):
        read_csv(str(path), max_columns=200_000)
    with pytest.raises(DatasetError, match="more than 10000 fields"):
        read_csv(str(path), max_columns=10_000)
