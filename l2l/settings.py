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
    #: Several API replicas' addresses for workers to report to (JSON list in the environment,
    #: e.g. L2L_API__REPORT_URLS='["http://a:8000", "http://b:8000"]'): each trial picks one and
    #: moves to the next if it does not answer. Empty: the one address above.
    report_urls: list[str] = Field(default_factory=list)
    #: Log every request (uvicorn's access log) in ``l2l serve``.
    access_log: bool = False
    #: Upper bounds a job may ask for; larger budgets are refused with a 422.
    max_trials_per_job: int = 10_000
    max_concurrency: int = 256
    max_epochs: int = 1_000
    #: Largest dataset upload accepted, in megabytes.
    max_upload_mb: float = 200.0
    #: Largest body of any other request (JSON), and of a worker's final-model upload, in MB.
    max_body_mb: float = 1.0
    max_model_mb: float = 2048.0


class UploadSettings(BaseModel):
    """What one upload may cost the API: every limit is checked before the memory is spent."""

    #: Members of a zip and their total size once decompressed (read from the headers, then
    #: enforced while extracting, so a zip bomb stops at the limit).
    max_zip_members: int = 10_000
    max_unzipped_mb: float = 256.0
    #: Pixels of one image, read from its header before it is decoded.
    max_image_pixels: int = 4096 * 4096
    #: Rows and columns of a CSV, and rows times columns of an npz's x (from its header).
    max_rows: int = 1_000_000
    max_columns: int = 10_000
    max_cells: int = 20_000_000
    #: Cells of a CSV (rows times columns): its check holds every cell as text (~60 bytes each).
    max_csv_cells: int = 4_000_000
    #: Seconds an upload's check may take before it is refused (it runs off the event loop).
    max_seconds: float = 120.0


class SecuritySettings(BaseModel):
    """The trust boundary: what only an admin can allow, and what refuses abuse."""

    #: References a job may name besides the built-in spaces' and the ``l2l.builders`` entry
    #: points: ``"module:function"`` or ``"name=module:function"``;
    #: e.g. ``L2L_SECURITY__BUILDERS='["my_team_models:build"]'``.
    builders: list[str] = Field(default_factory=list)
    #: Failed authentications one client address may make per minute before it gets a 429.
    auth_failures_per_minute: int = 30
    #: The fewest CPUs one trial may ask for: a cluster cannot honour slices thinner than this.
    min_cpu_per_trial: float = 0.25
    #: Seconds a client is told to wait (Retry-After) when the database is out.
    retry_after_seconds: int = 5


class LimitSettings(BaseModel):
    """Per-team limits for teams that have none of their own."""

    max_concurrent_jobs: int = 5
    max_trials_per_job: int = 1_000
    #: GPUs plus TPU cores one job may hold at once (per-trial amount x concurrency).
    max_accelerators_per_job: float = 8.0


class ControllerSettings(BaseModel):
    #: The longest an idle job loop waits before a full pass (lease renewals, jobs whose
    #: controller died); it wakes sooner on news: a worker ended, or the database changed.
    poll_seconds: float = 1.0
    #: How often an idle loop checks the database for news (a job submitted, paused or
    #: cancelled, a report stored); a worker ending wakes it at once.
    wake_seconds: float = 0.05
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


class WorkerSettings(BaseModel):
    """The long-lived worker processes that train trial after trial."""

    #: The Keras backend of jobs that name none: "tensorflow" or "jax".
    backend: str = "tensorflow"
    #: A worker whose resident memory has grown past this after a trial is replaced.
    max_rss_mb: float = 4096.0
    #: A worker with no trial for this long is stopped, giving its CPUs/GPUs back to the cluster.
    idle_seconds: float = 60.0
    #: Memory of one GPU, for packing several trials on it (80 for an H100, 141 for an H200).
    gpu_memory_gb: float = 80.0


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
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    placement: PlacementSettings = Field(default_factory=PlacementSettings)
    uploads: UploadSettings = Field(default_factory=UploadSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'l2l.db'}"

    @property
    def report_url(self) -> str:
        return (self.api.public_url or f"http://{self.api.host}:{self.api.port}").rstrip("/")

    @property
    def worker_report_url(self) -> str:
        """What a trial's task carries: the report address, or several separated by commas."""
        return ",".join(url.rstrip("/") for url in self.api.report_urls) or self.report_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
