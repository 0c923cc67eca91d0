"""All configuration, from environment variables (OMNICRM_*) or a .env file; secrets never in code."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from omnicrm.domain.privacy import DEV_PSEUDONYM_KEY

AUDIT_KEY_MIN = 32
# The development key of tracked links (never valid in production, see the validator below).
DEV_FEEDBACK_KEY = "omnicrm-development-feedback-key-not-for-production"

# The event catalogue and the scenario library ship inside the package (package data), so every
# command finds them from any working directory; OMNICRM_CATALOGUE_FILE / OMNICRM_SCENARIOS_DIR
# name the bank's own files instead.
SHIPPED_DATA = Path(__file__).resolve().parent / "data"
SHIPPED_CATALOGUE = SHIPPED_DATA / "catalogue" / "events.yaml"
SHIPPED_SCENARIOS = SHIPPED_DATA / "scenarios"


class SmsProvider(BaseModel):
    """One SMS gateway of OMNICRM_SMS_PROVIDERS (a JSON list, in failover order)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: Literal["kannel", "smpp"] = "kannel"
    url: str | None = None  # kannel: http://host:13013/cgi-bin/sendsms
    host: str | None = None  # smpp
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str  # kannel's sendsms-user, SMPP's system_id
    password: SecretStr
    sender: str = Field(min_length=1, max_length=16)
    smsc: str | None = None  # kannel: route through one smsc-id
    rate: float | None = Field(default=None, gt=0)  # sends per second per worker

    @model_validator(mode="after")
    def _where(self) -> SmsProvider:
        if self.kind == "kannel" and not self.url:
            raise ValueError(f"SMS provider {self.name}: a kannel provider needs its sendsms url")
        if self.kind == "smpp" and not (self.host and self.port):
            raise ValueError(f"SMS provider {self.name}: an smpp provider needs host and port")
        return self


# What OMNICRM_BRIDGE_NAMES may rename, per broker (fields of bridge/rabbitmq.RabbitConfig and
# bridge/nats.NatsConfig; tests/unit keep the lists in step).
BRIDGE_NAMES: dict[str, tuple[str, ...]] = {
    "rabbitmq": (
        "publish_exchange",
        "consume_exchange",
        "consume_queue",
        "binding_key",
        "dead_letter_exchange",
        "dead_letter_queue",
    ),
    "nats": (
        "publish_stream",
        "publish_prefix",
        "consume_stream",
        "consume_subject",
        "durable",
        "dead_letter_stream",
        "dead_letter_subject",
    ),
}


class Settings(BaseSettings):
    """Runtime settings; see the configuration table in the README."""

    model_config = SettingsConfigDict(env_prefix="OMNICRM_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./var/omnicrm.db"
    # SQLite (WAL) at each commit: FULL syncs the log to disk, so an acknowledged write survives a
    # power cut; NORMAL syncs only at checkpoints - faster, but the last commits before a power cut
    # (never a process crash) may be lost. PostgreSQL: see store/db.py (synchronous_commit).
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    catalogue_file: Path = SHIPPED_CATALOGUE
    scenarios_dir: Path = SHIPPED_SCENARIOS
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    token_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    ingest_linger_ms: float = Field(default=2.0, ge=0, le=1000)
    ingest_max_batch: int = Field(default=1000, ge=1, le=1000)
    max_batch_items: int = Field(default=1000, ge=1, le=1000)
    # Request bodies (api/front_door.py): larger ones get 413 unread; `…:batch` routes take more.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_batch_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    publish_on_start: bool = True  # publish changed scenario files when the service starts
    decide_in_process: bool = True  # the API also runs the decision worker (embedded mode)
    decider_process: bool = True  # `omnicrm serve` runs it as a child process, not a thread in the API
    decider_idle_ms: float = Field(default=200.0, ge=1, le=60_000)
    decider_poll_ms: float = Field(default=200.0, ge=1, le=10_000)  # the child looks this often unless rung
    opentelemetry: bool = False  # FastAPI's OpenTelemetry spans and metrics (providers set up by the bank)
    intake_fast_path: bool = True  # POST /v1/events and /v1/interactions beneath FastAPI (api/intake.py)
    campaign_poll_s: float = Field(default=30.0, ge=0.1, le=3600)  # scheduled campaign starts
    pg_bench_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    # Login throttle (services/access/login_throttle.py): failures before a user name / a client address is
    # locked, the first lock (doubled by every further failure, up to the cap), and how long after its
    # last failure or the end of its lock a record is forgotten.
    login_max_failures_per_name: int = Field(default=5, ge=1, le=1000)
    login_max_failures_per_address: int = Field(default=50, ge=1, le=100_000)
    login_lock_seconds: float = Field(default=60.0, gt=0, le=86_400)
    login_lock_max_seconds: float = Field(default=3600.0, gt=0, le=30 * 86_400)
    login_forget_seconds: float = Field(default=3600.0, gt=0, le=30 * 86_400)
    # Proxies (addresses or networks) whose X-Forwarded-For names the client; empty: the peer is the client.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # HMAC key of the tombstones an erasure leaves (README: data subjects' rights); production sets it.
    pseudonym_key: SecretStr = Field(default=SecretStr(DEV_PSEUDONYM_KEY), min_length=32)
    # HMAC key of the audit chain; required in production (see store/audit_key.py for the default elsewhere)
    audit_key: SecretStr | None = None

    # --- channels and feedback (README: channels) ---------------------------------------------------
    # Where clients' mail programs and providers reach omnicrm: tracked links, the open pixel, the
    # unsubscribe page and Kannel's delivery receipts point here.
    public_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^\s/]+(/\S*)?$")
    # HMAC key of those links' tokens; production sets its own (32+ random characters).
    feedback_key: SecretStr = Field(default=SecretStr(DEV_FEEDBACK_KEY), min_length=32)
    # Provider -> HMAC secret of its webhooks (JSON: {"mailer": "...", "sms-b": "..."}).
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # Hosts a tracked link may redirect to (the bank's own sites); others are refused (no open redirect).
    tracking_redirect_hosts: list[str] = Field(default_factory=list)
    # Where a tracked link without a target of its own leads (the tap on a web push): the bank's site
    # or app link. Unset: a short thank-you page.
    tracking_landing_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    dispatch_max_attempts: int = Field(default=8, ge=1, le=100)
    dispatch_backoff_s: float = Field(default=30.0, gt=0, le=86_400)  # doubled per attempt, with jitter
    dispatch_backoff_max_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    dispatch_expiry_hours: float = Field(default=48.0, gt=0, le=90 * 24)  # older queued messages expire
    dispatch_idle_ms: float = Field(
        default=200.0, ge=1, le=60_000
    )  # a worker with nothing due sleeps so long
    # Messages per dispatch transaction on PostgreSQL (SQLite: always one; store/dispatch.Journal).
    dispatch_batch: int = Field(default=50, ge=1, le=1000)
    dispatch_process: bool = True  # `omnicrm serve` runs the dispatch worker as a child process
    # Broker bridge (`omnicrm bridge`, docs/broker-bridge.md): which broker, where, and the prefix of
    # the bank's CloudEvent types (`ua.bank.` takes `ua.bank.product.opened` as `product.opened`).
    bridge_broker: Literal["rabbitmq", "nats"] = "rabbitmq"
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    nats_url: str = "nats://127.0.0.1:4222"
    bridge_type_prefix: str = ""
    # The broker's exchange, queue, stream and subject names, where the bank's differ from ours (JSON,
    # e.g. {"consume_queue": "crm.events"}); the names each broker takes are in BRIDGE_NAMES.
    bridge_names: dict[str, str] = Field(default_factory=dict)
    # E-mail over SMTP; unset host: no e-mail channel.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_cafile: Path | None = None  # a CA to trust for STARTTLS besides the system's
    mail_from: str = "bank@bank.example"
    email_rate: float | None = Field(default=None, gt=0)  # sends per second per worker
    # SMS gateways in failover order (JSON list of SmsProvider); empty: no SMS channel.
    sms_providers: list[SmsProvider] = Field(default_factory=list)
    # Web push (VAPID, RFC 8292): the private key from `omnicrm channels vapid-keys`; unset: no web push.
    vapid_private_key: SecretStr | None = None
    vapid_subject: str = "mailto:crm@bank.example"
    webpush_rate: float | None = Field(default=None, gt=0)  # sends per second per worker

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _pragma_case(cls, value: object) -> object:
        """SQLite's pragma values are case-insensitive; a refused value is reported as given."""
        if isinstance(value, str) and value.upper() in ("FULL", "NORMAL"):
            return value.upper()
        return value

    @model_validator(mode="after")
    def _production_is_not_embedded(self) -> Settings:
        if self.env == "production" and self.database_url.startswith("sqlite"):
            raise ValueError("OMNICRM_DATABASE_URL must point at PostgreSQL when OMNICRM_ENV=production")
        if self.env == "production" and self.pseudonym_key.get_secret_value() == DEV_PSEUDONYM_KEY:
            raise ValueError("set OMNICRM_PSEUDONYM_KEY (32+ random characters) when OMNICRM_ENV=production")
        return self

    @model_validator(mode="after")
    def _audit_key_is_strong_and_set_in_production(self) -> Settings:
        if self.audit_key is not None and len(self.audit_key.get_secret_value()) < AUDIT_KEY_MIN:
            raise ValueError(f"OMNICRM_AUDIT_KEY must be at least {AUDIT_KEY_MIN} characters long")
        if self.env == "production" and self.audit_key is None:
            raise ValueError(
                "OMNICRM_AUDIT_KEY must be set when OMNICRM_ENV=production: the audit chain's secret, "
                f"{AUDIT_KEY_MIN}+ random characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))'), "
                "kept outside the database and never changed while the log lives"
            )
        return self

    @model_validator(mode="after")
    def _bridge_names_are_the_brokers(self) -> Settings:
        known = BRIDGE_NAMES[self.bridge_broker]
        for name, value in self.bridge_names.items():
            if name not in known:
                raise ValueError(
                    f"OMNICRM_BRIDGE_NAMES: {name!r} is not a name {self.bridge_broker} takes "
                    f"({', '.join(known)})"
                )
            if not value or not value.isprintable() or " " in value or len(value) > 200:
                raise ValueError(f"OMNICRM_BRIDGE_NAMES: {name} is 1-200 printable characters, no spaces")
        return self

    @model_validator(mode="after")
    def _feedback_key_is_set_in_production(self) -> Settings:
        if self.env == "production" and self.feedback_key.get_secret_value() == DEV_FEEDBACK_KEY:
            raise ValueError("set OMNICRM_FEEDBACK_KEY (32+ random characters) when OMNICRM_ENV=production")
        return self
