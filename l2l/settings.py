"""One settings object for every process, read from ``L2L_*`` environment variables.

Nested groups use ``__``: ``L2L_CONTROLLER__LEASE_SECONDS=5``. The database URL is
top level (``L2L_DATABASE_URL``) because it is the one setting every deployment sets.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    #: uvicorn worker processes serving the API (they share the database; each has its own
    #: group-commit writer of workers' reports). More than one helps on several cores.
    workers: int = Field(default=1, ge=1)
    #: The address workers use to report back; defaults to http://host:port.
    public_url: str | None = None
    #: Upper bounds a job may ask for; larger budgets are refused with a 422.
    max_trials_per_job: int = 10_000
    max_concurrency: int = 256
    max_epochs: int = 1_000
    #: Largest dataset upload accepted, in megabytes.
    max_upload_mb: float = 200.0


class LimitSettings(BaseModel):
    """Per-team limits for teams that have none of their own."""

    max_concurrent_jobs: int = 5
    max_trials_per_job: int = 1_000
    #: GPUs plus TPU cores one job may hold at once (per-trial amount x concurrency).
    max_accelerators_per_job: float = 8.0


class ControllerSettings(BaseModel):
    #: Seconds between passes of the job loop when nothing happened.
    poll_seconds: float = 0.25
    #: A running job whose controller has not renewed its lease for this long is taken over.
    lease_seconds: float = 30.0
    #: How often a trial that failed for a retryable reason is tried again.
    max_retries: int = 2
    #: This many trials failing in a row stop the job with a clear reason.
    max_consecutive_failures: int = 5
    #: A trial (or final model) attempt running longer than this is stopped and counts as
    #: timed out; a job's ``budget.trial_timeout_seconds`` overrides it.
    trial_timeout_seconds: float = Field(default=6 * 3600.0, gt=0)
    #: How often the controller writes its heartbeat (``GET /health`` reads it).
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    #: ``GET /health`` answers 503 when the newest heartbeat is older than this.
    heartbeat_stale_seconds: float = Field(default=30.0, gt=0)
    #: After a database error the loop waits this long, doubling up to the maximum, then retries.
    database_retry_first_seconds: float = Field(default=0.5, gt=0)
    database_retry_max_seconds: float = Field(default=15.0, gt=0)
    #: A job whose loading stopped the controller process this many times is failed, never claimed again.
    quarantine_after_crashes: int = Field(default=2, ge=1)
    #: ``l2l serve`` restarts a controller that exited after this long, doubling up to the maximum.
    restart_first_seconds: float = Field(default=1.0, gt=0)
    restart_max_seconds: float = Field(default=30.0, gt=0)
    #: Seconds ``l2l serve`` gives the controller to stop (release leases, stop Ray) before killing it.
    stop_grace_seconds: float = Field(default=10.0, gt=0)


class RaySettings(BaseModel):
    #: None starts an in-process Ray; "auto" or "ray://host:10001" joins an existing cluster.
    address: str | None = None
    #: CPUs the embedded Ray may use (None: all of them).
    num_cpus: int | None = None


class ServeSettings(BaseModel):
    """The prediction service: a Ray Serve deployment the controller starts."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8001
    #: A replica with no request for this long is stopped (it starts again on the next one).
    idle_seconds: float = 300.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/predict"


class PlacementSettings(BaseModel):
    """Device-placement jobs and the op graphs teams upload for them."""

    #: Search seconds of a placement job that names none.
    default_seconds: float = 120.0
    #: The most search seconds a placement job may ask for; more is refused with a 422.
    max_seconds: float = 3600.0
    #: How often a placement worker reports its best step time so far.
    progress_seconds: float = 5.0
    #: Largest op-graph upload, in megabytes, and most ops a graph may have.
    max_graph_mb: float = 20.0
    max_graph_ops: int = 50_000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="L2L_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path(".l2l-data")
    #: Any SQLAlchemy URL; empty means SQLite in ``data_dir``.
    database_url: str | None = None
    api: ApiSettings = Field(default_factory=ApiSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    placement: PlacementSettings = Field(default_factory=PlacementSettings)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'l2l.db'}"

    @property
    def report_url(self) -> str:
        return (self.api.public_url or f"http://{self.api.host}:{self.api.port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
