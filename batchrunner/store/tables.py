"""The schema, as SQLAlchemy Core tables. Migrations (migrations.py) create and change it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    literal_column,
    text,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite stores it as ISO text without an offset, which sorts and compares correctly because every value
    is UTC; PostgreSQL stores ``timestamptz``. Values read back are always aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Integer primary keys that are BIGINT on PostgreSQL and the rowid alias on SQLite.
BigId: Any = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("applied_at", UTCDateTime(), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("source", Text),
    Column("options_json", Text),
    Column("settings_json", Text),
    Column("last_used_at", UTCDateTime()),
    Column("cancelled_at", UTCDateTime()),
)
"""``options_json``: how the manifest was submitted; ``settings_json``: how the run is run (see
batchrunner.config.runsettings); ``last_used_at``: the last submit, run, retry or cancel (the latest run
is the one most recently used); ``cancelled_at``: set by ``cancel``, cleared by ``retry``."""

runners = Table(
    "runners",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("run_id", BigId, ForeignKey("runs.id", ondelete="CASCADE")),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime()),
    Column("limits_json", Text),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", BigId, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("custom_id", String(512), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("format", String(32), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("model", String(200)),
    Column("request_json", Text, nullable=False),
    Column("metadata_json", Text),
    Column("content_hash", String(32), nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("sent", Boolean, nullable=False, server_default=false()),
    Column("not_before", UTCDateTime()),
    Column("lease_owner", String(64)),
    Column("lease_token", String(32)),
    Column("lease_expires_at", UTCDateTime()),
    Column("last_error_class", String(64)),
    Column("last_error", Text),
    Column("updated_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("batch_id", BigId),
    UniqueConstraint("run_id", "custom_id", name="uq_jobs_run_custom_id"),
    # ``sent``: the request of the current attempt went out (cleared by a claim, set by Store.mark_sent);
    # a running job of a runner that died was in flight if it is set.
    # ``batch_id``: the provider batch (``batches.id``) that holds the job while it is running in one, and
    # that served it once it has succeeded or failed there; cleared when it goes back to pending. No
    # foreign key: 0001 creates ``jobs`` before ``batches`` exists.
    Index("ix_jobs_claim", "run_id", "state", "id"),
    Index("ix_jobs_batch", "batch_id"),
    # status's jobs finished in the last 30 s, counted from the index alone
    Index("ix_jobs_finished", "run_id", "finished_at", "state"),
    # a runner's (or the provider batches') running jobs, without a walk of the run's running jobs, which
    # in batch mode are a million held by batches: heartbeats, held counts, busy runners (migration 0010)
    Index(
        "ix_jobs_leased",
        "lease_owner",
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
)

RUNNING_JOB = jobs.c.state == literal_column("'running'")
"""``state = 'running'`` written out in the SQL, not bound: SQLite (and PostgreSQL's generic plans) use a
partial index such as ``ix_jobs_leased`` only for a query that repeats its condition."""

attempts = Table(
    "attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", BigId, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("runner_id", String(64)),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("status_code", Integer),
    Column("error_class", String(64)),
    Column("error_message", Text),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cached_tokens", Integer),
    Column("possibly_billed", Boolean, nullable=False, server_default=false()),
    Column("request_id", String(200)),
    Column("error_body", Text),
    Index("ix_attempts_job", "job_id"),
    Index("ix_attempts_finished", "finished_at"),  # status's last minute, the dashboard's series
    # status's "re-sent after interruption": the few interrupted attempts, not every attempt of the run
    Index(
        "ix_attempts_interrupted",
        "error_class",
        "job_id",
        sqlite_where=text("error_class = 'interrupted'"),
        postgresql_where=text("error_class = 'interrupted'"),
    ),
    # the dashboard's latest errors: the failed attempts only, newest first
    Index(
        "ix_attempts_failed",
        "finished_at",
        sqlite_where=text("error_class IS NOT NULL"),
        postgresql_where=text("error_class IS NOT NULL"),
    ),
)

results = Table(
    "results",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", BigId, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("output_text", Text),
    Column("response_json", Text),
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("cached_tokens", Integer, nullable=False, server_default="0"),
    Column("cost_usd", Float),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("stream_events", LargeBinary),
    Column("batch_line", Text),
    Column("created_at", UTCDateTime(), nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", BigId, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("local_id", String(40), nullable=False, unique=True),
    Column("provider", String(64), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("model", String(200)),
    Column("state", String(16), nullable=False),
    Column("requests", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
    Column("file_id", String(200)),
    Column("remote_id", String(200)),
    Column("remote_status", String(32)),
    Column("succeeded", Integer, nullable=False, server_default="0"),
    Column("errored", Integer, nullable=False, server_default="0"),
    Column("expired", Integer, nullable=False, server_default="0"),
    Column("canceled", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("submitted_at", UTCDateTime()),
    Column("polled_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),
    Column("error", Text),
    Column("owner", String(300)),
    Column("owner_until", UTCDateTime()),
    # one row per provider batch (docs/batch.md): committed, with its jobs leased to it, before anything is
    # uploaded; ``file_id`` and ``remote_id`` are recorded as soon as the provider gives them. ``owner``
    # (``host:pid``) and ``owner_until``: the process sending it to the provider, so that two runners of
    # one run never send the same batch (another takes it over once that process is gone or its hold lapsed)
    Index("ix_batches_run_state", "run_id", "state"),
)

latencies = Table(
    "latencies",
    metadata,
    Column("run_id", BigId, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("count", BigInteger, nullable=False),
    # attempts per latency bucket (policy/histogram.py), counted as they are written: ``kind`` is
    # ``latency`` or ``ttft``; a run's percentiles read these few rows instead of sorting its attempts
)

provider_pauses = Table(
    "provider_pauses",
    metadata,
    Column("run_id", BigId, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("paused_until", UTCDateTime(), nullable=False),
)
"""A Retry-After seen by one runner pauses the provider for every runner of the run."""

# -- a run's running totals (store/counters.py) --------------------------------------------------------
# Kept by the database's own triggers on ``jobs``, ``attempts`` and ``results``, so every write counts
# itself, whatever statement made it; ``status`` and the dashboard add up these few rows instead of
# reading a million. ``shard``: on PostgreSQL the writing connection's backend pid, so that two runners
# never update the same row (no waits, no deadlocks); a reader sums over shards. Always 0 on SQLite.

run_counts = Table(
    "run_counts",
    metadata,
    Column("run_id", BigId, primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("state_key", String(16), primary_key=True),
    Column("jobs", BigInteger, nullable=False),
    Column("attempts", BigInteger, nullable=False),
    # jobs and their summed ``jobs.attempts`` by state, ``running`` split three ways as status shows it
    # (``claimed``: not sent yet; ``running``: in flight; ``batched``: held by a provider batch)
)

run_totals = Table(
    "run_totals",
    metadata,
    Column("run_id", BigId, primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("attempts", BigInteger, nullable=False, server_default="0"),
    Column("possibly_billed", BigInteger, nullable=False, server_default="0"),
    Column("first_at", UTCDateTime()),
    Column("last_at", UTCDateTime()),
    Column("results", BigInteger, nullable=False, server_default="0"),
    Column("priced_results", BigInteger, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cached_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("batch_results", BigInteger, nullable=False, server_default="0"),
    Column("batch_cost_usd", Float, nullable=False, server_default="0"),
    # attempt rows (how many, how many possibly billed, the first start and the last finish) and results
    # (how many, how many priced, their tokens and cost; those of jobs a provider batch served apart)
)

run_errors = Table(
    "run_errors",
    metadata,
    Column("run_id", BigId, primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("error_class", String(64), primary_key=True),
    Column("count", BigInteger, nullable=False),
    # attempt rows by error class
)

run_seconds = Table(
    "run_seconds",
    metadata,
    Column("run_id", BigId, primary_key=True),
    Column("second", BigInteger, primary_key=True),
    Column("outcome", String(64), primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("attempts", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("rate_limited", BigInteger, nullable=False),
    sqlite_with_rowid=False,
    # attempt rows by the second they finished (Unix time) and their outcome: the error class, or '' for
    # an answer; ``tokens``: input and output of the answers; ``rate_limited``: those with status 429.
    # Kept by the same triggers (store/counters.py), read by a range of seconds: the last minute's
    # figures and the dashboard's plots. Keyed second first, and clustered on the key on SQLite (no
    # rowid), so that a range is one walk of the B-tree however long the run has been going
)

latency_slots = Table(
    "latency_slots",
    metadata,
    Column("run_id", BigId, primary_key=True),
    Column("width", Integer, primary_key=True),
    Column("start", BigInteger, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("count", BigInteger, nullable=False),
    sqlite_with_rowid=False,
    # ``latencies`` by when the attempts finished, in slots of ``width`` seconds (1 and 5: SLOT_WIDTHS in
    # store/writeback.py) starting at ``start`` (Unix time, a multiple of the width), counted at write-back.
    # A plot of 10 minutes in 10 s buckets reads 120 slots of 5 s, not 600 of 1 s
)
