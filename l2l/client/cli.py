"""The ``l2l`` command line.

``l2l serve`` runs the API and, beside it, the controller (the job loop) as its own
process, so the web process never imports Ray or TensorFlow. ``l2l demo`` starts the
service if it is not already up, runs a small search and prints how it goes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from l2l.client import ApiError
from l2l.client.commands import CLIENT_COMMANDS, add_client_parsers, run_client_command
from l2l.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2l", description="Neural-architecture search as a service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API and the controller (embedded default)")
    serve.add_argument("--host", help="address to listen on (default: L2L_API__HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: L2L_API__PORT or 8000)")
    serve.add_argument("--no-controller", action="store_true", help="run the API alone")
    commands.add_parser("controller", help="run the job loop: claim jobs, propose trials, train on Ray")
    commands.add_parser("migrate", help="bring the database schema up to date")
    admin = commands.add_parser("admin", help="teams and API keys").add_subparsers(
        dest="admin", required=True
    )
    create_team = admin.add_parser("create-team", help="make a team and print its API key (shown once)")
    create_team.add_argument("name")
    create_team.add_argument("--max-concurrent-jobs", type=int)
    create_team.add_argument("--max-trials-per-job", type=int)
    create_team.add_argument("--max-accelerators-per-job", type=float)
    new_key = admin.add_parser("new-key", help="print a further API key for an existing team")
    new_key.add_argument("name")
    demo = commands.add_parser("demo", help="start the service and run a small REINFORCE search on digits")
    demo.add_argument("--trials", type=int, default=24)
    demo.add_argument("--epochs", type=int, default=4)
    demo.add_argument("--concurrency", type=int, default=2)
    demo.add_argument("--keep-serving", action="store_true", help="leave the service running afterwards")
    add_client_parsers(commands)
    from l2l.bench.cli import add_bench_parser

    add_bench_parser(commands)
    args = parser.parse_args(argv)

    # demo and bench print their own progress; admin prints a key a script may capture.
    quiet = args.command in ("demo", "bench", "admin", "migrate", *CLIENT_COMMANDS)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic says at INFO which dialect it found and each revision it runs: noise at every start.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return _serve(args.host, args.port, controller=not args.no_controller)
        if args.command == "controller":
            return _controller()
        if args.command == "bench":
            from l2l.bench.cli import run_bench

            return run_bench(args)
        if args.command == "migrate":
            _store().migrate()
            print("database is up to date")
            return 0
        if args.command == "admin":
            return _admin(args)
        if args.command in CLIENT_COMMANDS:
            return run_client_command(args)
        from l2l.client.demo import run_demo

        return run_demo(args.trials, args.epochs, args.concurrency, args.keep_serving)
    except KeyboardInterrupt:
        return 130
    except UserFacingError as error:
        print(f"l2l: {error}", file=sys.stderr)
        return 2
    except ApiError as error:
        print(f"l2l: {error}", file=sys.stderr)
        return 1


class UserFacingError(Exception):
    """An error whose message alone tells the user what to do."""


def _store() -> Any:
    from l2l.store import StorageError, Store

    url = get_settings().resolved_database_url
    try:
        return Store(url)
    except StorageError as error:
        raise UserFacingError(f"cannot open the database {url}: {error}") from error


def _admin(args: argparse.Namespace) -> int:
    from l2l.service import jobs as service
    from l2l.store import Conflict, NotFound

    store = _store()
    store.migrate()
    try:
        if args.admin == "create-team":
            limits = {
                "max_concurrent_jobs": args.max_concurrent_jobs,
                "max_trials_per_job": args.max_trials_per_job,
                "max_accelerators_per_job": args.max_accelerators_per_job,
            }
            team, key = service.create_team(store, args.name, limits)
        else:
            team = store.team_by_name(args.name)
            key = service.issue_api_key(store, team.id)
    except (Conflict, NotFound, ValueError) as error:
        raise UserFacingError(str(error)) from None
    # The key alone on stdout, so scripts can capture it; the advice on stderr.
    print(f"API key for team {team.name} (shown once; keep it secret):", file=sys.stderr)
    print(key)
    return 0


def _serve(host: str | None, port: int | None, controller: bool) -> int:
    """The API in this process and, unless ``controller`` is False, a supervised controller child.

    SIGTERM or SIGINT stops everything this started, within seconds: uvicorn finishes its
    requests (5 s at most), the controller releases its leases and stops Ray (``stop_grace_seconds``
    at most, then it is killed), and any process left below this one is stopped too.
    """
    import uvicorn

    from l2l.client.supervisor import ControllerSupervisor, become_subreaper, stop_descendants

    settings = get_settings()
    host = host or settings.api.host
    port = port or settings.api.port
    env = dict(os.environ, L2L_API__HOST=host, L2L_API__PORT=str(port))
    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    _store().migrate()  # once, before two processes race to do it
    become_subreaper()  # what the controller leaves behind (Ray) comes back to us to stop
    config = uvicorn.Config(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # a line per worker report would cost more than the report
        workers=settings.api.workers,
        timeout_graceful_shutdown=5,
    )
    server = _server_without_signals(config)
    supervisor = None
    if controller:
        knobs = settings.controller
        supervisor = ControllerSupervisor(
            [sys.executable, "-m", "l2l.client.cli", "controller"],
            env,
            first_delay=knobs.restart_first_seconds,
            max_delay=knobs.restart_max_seconds,
            grace_seconds=knobs.stop_grace_seconds,
        )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stopping.is_set():  # a second signal: do not wait for open requests
            server.force_exit = True
        stopping.set()
        server.should_exit = True
        if supervisor is not None:  # in parallel with uvicorn's own shutdown
            threading.Thread(target=supervisor.stop, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    if supervisor is not None:
        supervisor.start()
    try:
        if settings.api.workers > 1:
            # Several API processes on one socket: uvicorn's supervisor starts and stops them (its
            # own handlers replace ours in this process, and it returns on SIGTERM, so the finally
            # below still stops the controller).
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    finally:
        if supervisor is not None:
            supervisor.stop()
        stop_descendants(grace_seconds=3.0)
    return 0


def _server_without_signals(config: Any) -> Any:
    """uvicorn's Server, with ``l2l serve``'s own signal handlers left in place.

    uvicorn's would re-raise the signal at the end of its shutdown, ending this process
    before it stopped the controller (which then ran on, orphaned, with its leases).
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


def _start_predictions(settings: Any) -> None:
    from l2l.worker.predictor import start_predictor

    try:
        start_predictor(settings.serve.host, settings.serve.port, settings.serve.idle_seconds)
    except Exception:  # searches go on without predictions; the API says why they fail
        logging.getLogger(__name__).exception("the prediction service did not start")


def _stop_predictions() -> None:
    from l2l.worker.predictor import stop_predictor

    try:
        stop_predictor()
    except Exception:  # shutting down anyway; Ray's own shutdown ends what is left
        logging.getLogger(__name__).warning("the prediction service did not stop cleanly", exc_info=True)


def _controller() -> int:
    """Run the job loop until SIGTERM or SIGINT; then release the leases and stop Ray."""
    from l2l.loop import JobLoop
    from l2l.worker.ray_executor import RayExecutor

    stop = threading.Event()

    def stop_on_signal() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())

    stop_on_signal()
    settings = get_settings()
    store = _store()
    store.migrate()
    executor = RayExecutor(settings.ray.address, settings.ray.num_cpus)
    stop_on_signal()  # ray.init put in its own SIGTERM handler (sys.exit), which would skip the release
    try:
        if settings.serve.enabled and not stop.is_set():
            _start_predictions(settings)
        loop = JobLoop(store, executor, settings)
        loop.run(stop)
    finally:
        if settings.serve.enabled:
            _stop_predictions()
        executor.shutdown()
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
