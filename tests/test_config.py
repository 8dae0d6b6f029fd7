"""Settings from the environment: the documented variables and their errors."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1" and settings.port == 8080
    assert settings.cloudcode_urls[0].startswith("https://daily-cloudcode-pa")
    assert settings.api_keys == frozenset() and settings.admin_key is None and settings.cors_origins == ()


def test_api_keys_from_variable_and_file(tmp_path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# team keys\nkey-from-file-1\n\n  key-from-file-2  \n")
    settings = Settings.from_env({"GATEWAY_API_KEYS": "a-key, b-key,", "GATEWAY_API_KEYS_FILE": str(path)})
    assert settings.api_keys == {"a-key", "b-key", "key-from-file-1", "key-from-file-2"}


def test_unreadable_keys_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_API_KEYS_FILE"):
        Settings.from_env({"GATEWAY_API_KEYS_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"GATEWAY_LOG_LEVEL": "LOUD"}, "GATEWAY_LOG_LEVEL"),
        ({"GATEWAY_LOG_FORMAT": "xml"}, "GATEWAY_LOG_FORMAT"),
        ({"GATEWAY_MAX_BODY_MB": "-1"}, "GATEWAY_MAX_BODY_MB"),
        ({"GATEWAY_MODEL_ALIASES": "nonsense"}, "GATEWAY_MODEL_ALIASES"),
        ({"GATEWAY_CLIENT_VERSION": "latest"}, "GATEWAY_CLIENT_VERSION"),
    ],
)
def test_bad_values_name_the_variable(env: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


def test_urls_timeouts_cors_and_body_limit() -> None:
    settings = Settings.from_env({
        "GATEWAY_CLOUDCODE_URLS": "http://a:1/, http://b:2",
        "GATEWAY_CONNECT_TIMEOUT": "2.5", "GATEWAY_READ_TIMEOUT": "60",
        "GATEWAY_CORS_ORIGINS": "https://x.example, https://y.example",
        "GATEWAY_MAX_BODY_MB": "2", "GATEWAY_ADMIN_KEY": "adm",
    })
    assert settings.cloudcode_urls == ("http://a:1", "http://b:2")
    assert settings.connect_timeout == 2.5 and settings.read_timeout == 60.0
    assert settings.cors_origins == ("https://x.example", "https://y.example")
    assert settings.max_body_bytes == 2 * 1024 * 1024 and settings.admin_key == "adm"


def test_client_version_pin_and_manifest_url() -> None:
    assert Settings.from_env({}).client_version is None
    assert Settings.from_env({}).client_version_url.endswith("/manifest/latest-arm64-mac.yml")
    settings = Settings.from_env({"GATEWAY_CLIENT_VERSION": " 3.0.2 ", "GATEWAY_CLIENT_VERSION_URL": "http://m/x.yml"})
    assert settings.client_version == "3.0.2" and settings.client_version_url == "http://m/x.yml"
