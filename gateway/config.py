"""Settings read once from the environment at start-up.

Every variable is documented in the README; the names are a contract shared with tests, benchmarks and
deployments, so they are spelled out here in one place rather than read ad hoc across the code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DAILY_URL = "https://daily-cloudcode-pa.googleapis.com"
PROD_URL = "https://cloudcode-pa.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_USERINFO_URL = "https://www.googleapis.com/oauth2/v2/userinfo"
# The Antigravity updater's manifest, which names the version Antigravity users run (docs/upstream.md).
ANTIGRAVITY_MANIFEST_URL = (
    "https://antigravity-hub-auto-updater-974169037036.us-central1.run.app/manifest/latest-arm64-mac.yml"
)
# The loopback port registered with the Antigravity client's redirect URI (docs/upstream.md, "OAuth").
OAUTH_REDIRECT_PORT = 51121
# The Antigravity installed-app client (public in every Antigravity client; docs/upstream.md, "OAuth").
ANTIGRAVITY_CLIENT_ID = "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
ANTIGRAVITY_CLIENT_SECRET = "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"

DEFAULT_ACCOUNTS_FILE = Path("~/.config/cloudcode-gateway/accounts.json")
# antigravity-claude-proxy's file: used when ours does not exist, so its users need no setup.
ACP_ACCOUNTS_FILE = Path("~/.config/antigravity-proxy/accounts.json")


ACCOUNT_STRATEGIES = {"sticky", "round-robin", "hybrid"}
# Each model line's nearest peer in the other vendor's models, by line name so that no model id goes stale here:
# a line name stands for every model of that line, and the target resolves to the line's best model today.
DEFAULT_MODEL_FALLBACKS = {
    "gemini-pro": "claude-opus",
    "gemini-flash": "claude-sonnet",
    "claude-opus": "gemini-pro",
    "claude-sonnet": "gemini-flash",
}


class ConfigError(ValueError):
    """A setting has a value the gateway cannot run with."""


def _default_accounts_file() -> Path:
    ours = DEFAULT_ACCOUNTS_FILE.expanduser()
    theirs = ACP_ACCOUNTS_FILE.expanduser()
    if not ours.exists() and theirs.exists():
        return theirs
    return ours


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_float(env, name, default))


def _version(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if raw and not re.fullmatch(r"\d+(?:\.\d+){1,3}", raw):
        raise ConfigError(f"{name} must be a version such as 2.11.3, got {raw!r}")
    return raw or None


def _aliases(raw: str, name: str = "GATEWAY_MODEL_ALIASES") -> dict[str, str]:
    """Parse ``client-id=upstream-id,...`` into a mapping."""
    aliases: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, target = item.partition("=")
        if not sep or not key.strip() or not target.strip():
            raise ConfigError(f"{name} entry {item!r} is not of the form name=target")
        aliases[key.strip()] = target.strip()
    return aliases


def _fallbacks(raw: str) -> dict[str, str]:
    """GATEWAY_MODEL_FALLBACK: off (empty), on (the default pairs), or ``model=fallback,...``."""
    switch = raw.strip().lower()
    if switch in {"", "0", "false", "no", "off"}:
        return {}
    if switch in {"1", "true", "yes", "on"}:
        return dict(DEFAULT_MODEL_FALLBACKS)
    return _aliases(raw, "GATEWAY_MODEL_FALLBACK")


def _redis_url(raw: str) -> str | None:
    url = raw.strip()
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("GATEWAY_REDIS_URL must start with redis://, rediss:// or unix://")
    return url


def _switch(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """``on``/``off`` (or true/false, yes/no, 1/0); unset or empty is the default."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _choice(env: Mapping[str, str], name: str, default: str, allowed: set[str]) -> str:
    value = (env.get(name) or default).lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(sorted(allowed))}, got {value!r}")
    return value


def _api_keys(env: Mapping[str, str]) -> frozenset[str]:
    """Keys from GATEWAY_API_KEYS (comma-separated) and GATEWAY_API_KEYS_FILE (one per line, # comments)."""
    keys = {k.strip() for k in env.get("GATEWAY_API_KEYS", "").split(",") if k.strip()}
    path = env.get("GATEWAY_API_KEYS_FILE")
    if path:
        try:
            lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"GATEWAY_API_KEYS_FILE cannot be read: {exc.strerror}") from None
        keys.update(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return frozenset(keys)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    accounts_file: Path = field(default_factory=_default_accounts_file)
    # The accounts file's JSON itself (PaaS config vars); when set, it replaces the file.
    accounts_json: str | None = None
    # Where gunicorn's workers share what one learns (signature memory); None: each process keeps its own.
    shared_state_dir: Path | None = None
    # Redis for the state several instances share; None: the embedded store (one machine).
    redis_url: str | None = None
    cloudcode_urls: tuple[str, ...] = (DAILY_URL, PROD_URL)
    oauth_token_url: str = GOOGLE_TOKEN_URL
    oauth_client_id: str = ANTIGRAVITY_CLIENT_ID
    oauth_client_secret: str = ANTIGRAVITY_CLIENT_SECRET
    log_level: str = "INFO"
    connect_timeout: float = 10.0
    # Longest silence tolerated between two upstream reads (thinking phases can be long).
    read_timeout: float = 300.0
    # Re-sends of a request whose upstream answer carried no content at all.
    empty_retries: int = 2
    empty_retry_delay: float = 0.5
    # Pause before trying the next endpoint or account after a 5xx.
    server_error_delay: float = 1.0
    model_aliases: dict[str, str] = field(default_factory=dict)
    # Remote image URLs are fetched by the gateway; loopback/private targets only when allowed (tests).
    allow_private_image_urls: bool = False
    max_image_bytes: int = 20 * 1024 * 1024
    # Per request: images given by URL, the bytes they may make together, and the time one fetch may take.
    max_image_urls: int = 16
    max_image_url_bytes: int = 32 * 1024 * 1024
    image_fetch_timeout: float = 30.0
    # Access control: empty means any key (or none) is accepted.
    api_keys: frozenset[str] = frozenset()
    admin_key: str | None = None
    # Listening beyond loopback without API keys, on purpose (something in front checks callers).
    allow_no_auth: bool = False
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 32 * 1024 * 1024
    # Time a request body may take to arrive, in all; and the bytes of bodies one worker holds at once.
    body_timeout: float = 60.0
    body_memory_bytes: int = 2048 * 1024 * 1024
    # Seconds of upstream silence after which a streaming client gets a keep-alive ping.
    ping_interval: float = 10.0
    log_format: str = "text"
    # Accounts: which one takes a request, and how long a request may wait for a rate-limited one.
    account_strategy: str = "hybrid"
    max_wait: float = 120.0
    # model id -> the model to use when every account is out of quota for it.
    model_fallbacks: dict[str, str] = field(default_factory=dict)
    # Re-sends after 5xx, capacity and connection failures: at most this many, within this many seconds.
    max_retries: int = 4
    retry_budget: float = 30.0
    # `python -m gateway accounts add`: where the browser is sent, and the loopback port it comes back to.
    oauth_auth_url: str = GOOGLE_AUTH_URL
    oauth_userinfo_url: str = GOOGLE_USERINFO_URL
    oauth_redirect_port: int = OAUTH_REDIRECT_PORT
    # The Antigravity version reported to Google: this one when pinned, else the one the manifest names.
    client_version: str | None = None
    client_version_url: str = ANTIGRAVITY_MANIFEST_URL
    # Let an account out of quota serve from its Google One AI credits (they cost money: off by default).
    ai_credits: bool = False
    # Seals what clients carry for the gateway (Responses reasoning); None: a key kept with the shared state.
    secret_key: str | None = field(default=None, repr=False)
    # Stored Responses API responses (``store: true``): how long they are kept, and how much of them at most.
    responses_ttl: float = 24 * 3600.0
    responses_max_bytes: int = 256 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        urls = tuple(
            u.strip().rstrip("/") for u in env.get("GATEWAY_CLOUDCODE_URLS", "").split(",") if u.strip()
        )
        accounts = env.get("GATEWAY_ACCOUNTS_FILE")
        level = env.get("GATEWAY_LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"GATEWAY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        return cls(
            host=env.get("HOST", "127.0.0.1"),
            port=_int(env, "PORT", 8080),
            accounts_file=Path(accounts).expanduser() if accounts else _default_accounts_file(),
            accounts_json=env.get("GATEWAY_ACCOUNTS_JSON", "").strip() or None,
            shared_state_dir=Path(shared).expanduser() if (shared := env.get("GATEWAY_SHARED_STATE_DIR")) else None,
            redis_url=_redis_url(env.get("GATEWAY_REDIS_URL", "")),
            cloudcode_urls=urls or (DAILY_URL, PROD_URL),
            oauth_token_url=env.get("GATEWAY_OAUTH_TOKEN_URL") or GOOGLE_TOKEN_URL,
            oauth_client_id=env.get("GATEWAY_OAUTH_CLIENT_ID") or ANTIGRAVITY_CLIENT_ID,
            oauth_client_secret=env.get("GATEWAY_OAUTH_CLIENT_SECRET") or ANTIGRAVITY_CLIENT_SECRET,
            log_level=level,
            connect_timeout=_float(env, "GATEWAY_CONNECT_TIMEOUT", 10.0),
            read_timeout=_float(env, "GATEWAY_READ_TIMEOUT", 300.0),
            empty_retries=_int(env, "GATEWAY_EMPTY_RETRIES", 2),
            model_aliases=_aliases(env.get("GATEWAY_MODEL_ALIASES", "")),
            allow_private_image_urls=_flag(env, "GATEWAY_ALLOW_PRIVATE_IMAGE_URLS"),
            max_image_urls=_int(env, "GATEWAY_MAX_IMAGE_URLS", 16),
            max_image_url_bytes=int(_float(env, "GATEWAY_MAX_IMAGE_URL_MB", 32) * 1024 * 1024),
            image_fetch_timeout=_float(env, "GATEWAY_IMAGE_FETCH_TIMEOUT_SECONDS", 30.0),
            api_keys=_api_keys(env),
            admin_key=env.get("GATEWAY_ADMIN_KEY") or None,
            allow_no_auth=_flag(env, "GATEWAY_ALLOW_NO_AUTH"),
            cors_origins=tuple(o.strip() for o in env.get("GATEWAY_CORS_ORIGINS", "").split(",") if o.strip()),
            max_body_bytes=int(_float(env, "GATEWAY_MAX_BODY_MB", 32) * 1024 * 1024),
            body_timeout=_float(env, "GATEWAY_BODY_TIMEOUT_SECONDS", 60.0),
            body_memory_bytes=int(_float(env, "GATEWAY_BODY_MEMORY_MB", 2048) * 1024 * 1024),
            ping_interval=_float(env, "GATEWAY_PING_INTERVAL", 10.0),
            log_format=_choice(env, "GATEWAY_LOG_FORMAT", "text", {"text", "json"}),
            account_strategy=_choice(env, "GATEWAY_ACCOUNT_STRATEGY", "hybrid", ACCOUNT_STRATEGIES),
            max_wait=_float(env, "GATEWAY_MAX_WAIT_SECONDS", 120.0),
            model_fallbacks=_fallbacks(env.get("GATEWAY_MODEL_FALLBACK", "")),
            max_retries=_int(env, "GATEWAY_MAX_RETRIES", 4),
            retry_budget=_float(env, "GATEWAY_RETRY_BUDGET_SECONDS", 30.0),
            oauth_auth_url=env.get("GATEWAY_OAUTH_AUTH_URL") or GOOGLE_AUTH_URL,
            oauth_userinfo_url=env.get("GATEWAY_OAUTH_USERINFO_URL") or GOOGLE_USERINFO_URL,
            oauth_redirect_port=_int(env, "GATEWAY_OAUTH_REDIRECT_PORT", OAUTH_REDIRECT_PORT),
            client_version=_version(env, "GATEWAY_CLIENT_VERSION"),
            client_version_url=env.get("GATEWAY_CLIENT_VERSION_URL") or ANTIGRAVITY_MANIFEST_URL,
            ai_credits=_switch(env, "GATEWAY_AI_CREDITS"),
            secret_key=env.get("GATEWAY_SECRET_KEY") or None,
            responses_ttl=_float(env, "GATEWAY_RESPONSES_TTL_SECONDS", 24 * 3600.0),
            responses_max_bytes=int(_float(env, "GATEWAY_RESPONSES_MAX_MB", 256) * 1024 * 1024),
        )
