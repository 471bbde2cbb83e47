"""The API alone under uvicorn, for tests that measure it from outside.

``python tests/memory_server.py DATA_DIR DATABASE_URL PORT RSS_FILE [SETTINGS_JSON]``: serves
until SIGINT/SIGTERM, then writes its peak resident memory (KiB, ``ru_maxrss``) to RSS_FILE.
"""

import json
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
        Path(rss_file).write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


if __name__ == "__main__":
    main()
