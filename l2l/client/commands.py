"""``l2l submit / jobs / trials / download``: the command line over the REST client.

The service address comes from ``--url`` or ``L2L_URL`` (default: this machine's
service), the team key from ``--key`` or ``L2L_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from l2l.client import ApiError, Client
from l2l.client.format import job_summary
from l2l.settings import get_settings

FINISHED = ("completed", "failed", "cancelled")


def add_client_parsers(commands: Any) -> None:
    def with_service(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--url", help="the service (default: L2L_URL or this machine's)")
        parser.add_argument("--key", help="your team's API key (default: L2L_API_KEY)")
        return parser

    submit = with_service(commands.add_parser("submit", help="submit a job described in a YAML or JSON file"))
    submit.add_argument("file", type=Path)
    submit.add_argument("--wait", action="store_true", help="show progress until the job ends")
    jobs = with_service(commands.add_parser("jobs", help="list your team's jobs"))
    jobs.add_argument("--limit", type=int, default=20)
    trials = with_service(commands.add_parser("trials", help="list a job's trials, best first"))
    trials.add_argument("job", type=int)
    trials.add_argument("--limit", type=int, default=20)
    download = with_service(commands.add_parser("download", help="download a job's final model"))
    download.add_argument("job", type=int)
    download.add_argument("--format", choices=("keras", "savedmodel"), default="keras")
    download.add_argument("--out", type=Path, help="file to write (default: in this folder)")


CLIENT_COMMANDS = ("submit", "jobs", "trials", "download")


def run_client_command(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("L2L_API_KEY")
    if not key:
        raise ApiError(
            "no API key: pass --key or set L2L_API_KEY (an admin makes one with `l2l admin create-team`)"
        )
    client = Client(args.url or os.environ.get("L2L_URL") or get_settings().report_url, api_key=key)
    if args.command == "submit":
        return _submit(client, args.file, args.wait)
    if args.command == "jobs":
        for job in client.jobs(limit=args.limit)["items"]:
            progress = job["progress"]
            best = job["best_trial"]["reward"] if job["best_trial"] else None
            best_text = f"best {best:.4f}" if best is not None else "no result yet"
            done = f"{progress['completed']:>4}/{progress['trials']:<4}"
            print(f"{job['id']:>5}  {job['state']:<9}  {done} {best_text}  {job['name']}")
        return 0
    if args.command == "trials":
        page = client.trials(args.job, sort="reward", order="desc", limit=args.limit)
        for trial in page["items"]:
            reward = f"{trial['reward']:.4f}" if trial["reward"] is not None else "   -  "
            print(f"{trial['number']:>5}  {trial['state']:<9}  {reward}  {json.dumps(trial['params'])}")
        print(f"({len(page['items'])} of {page['total']} trials)")
        return 0
    return _download(client, args.job, args.format, args.out)


def _submit(client: Client, path: Path, wait: bool) -> int:
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except (OSError, yaml.YAMLError) as error:
        raise ApiError(f"cannot read {path}: {error}") from None
    if not isinstance(spec, dict):
        raise ApiError(f"{path} must describe one job (a mapping), not {type(spec).__name__}")
    job = client.submit_job(spec)
    print(f"submitted job {job['id']}: {job['name']}")
    if not wait:
        return 0
    while job["state"] not in FINISHED:
        time.sleep(2)
        job = client.job(job["id"])
        _progress_bar(job)
    print()
    print("\n".join(job_summary(job)))
    return 0 if job["state"] == "completed" else 1


def _progress_bar(job: dict[str, Any]) -> None:
    progress = job["progress"]
    done = progress["completed"] + progress["failed"] + progress["cancelled"]
    width = 30
    filled = int(width * done / max(progress["trials"], 1))
    best = job["best_trial"]["reward"] if job["best_trial"] else None
    best_text = f"best {best:.4f}" if best is not None else ""
    bar = "#" * filled + "-" * (width - filled)
    sys.stdout.write(f"\r[{bar}] {done}/{progress['trials']} trials  {job['state']}  {best_text}   ")
    sys.stdout.flush()


def _download(client: Client, job_id: int, format: str, out: Path | None) -> int:
    content, filename = client.download_model(job_id, format)
    target = out or Path(filename)
    target.write_bytes(content)
    print(f"saved {target} ({len(content) / 1024:.0f} KiB)")
    return 0
