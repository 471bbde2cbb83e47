"""The API alone under uvicorn, for tests that measure it from outside.

``python tests/memory_server.py DATA_DIR DATABASE_URL PORT RSS_FILE [SETTINGS_JSON]``: serves
until SIGINT/SIGTERM, then writes its peak resident memory (KiB) to RSS_FILE.

The peak is the kernel's high-water mark of this program's own memory (``VmHWM``), not
``ru_maxrss``: Linux keeps ``ru_maxrss`` across ``execve``, so a server started from a
2 GB pytest worker (``subprocess`` forks with vfork) would report that worker's peak.
"""

import json
import re
import resource
import sys
from pathlib import Path

import uvicorn

from api.main import create_app
from l2l.settings import Settings


def main() -> None:
    data_dir, database_url, port, rss_file = sys.argv[1:5]
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    settings = Settings(data_dir=data_dir, database_url=database_url, **extra)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=int(port), log_level="warning")
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the signal it stopped on
        pass
    finally:
        Path(rss_file).write_text(str(_peak_rss_kib()))


def _peak_rss_kib() -> int:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss is the nearest measure there
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))


if __name__ == "__main__":
    main()
