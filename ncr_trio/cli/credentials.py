"""Where the CLI finds its server and credentials: flags, then environment, then the login file.

`ncr-trio login` writes `$XDG_CONFIG_HOME/ncr-trio/config.toml` (default `~/.config/ncr-trio/`):

    # ncr-trio CLI login: written by `ncr-trio login`, removed by `ncr-trio logout`
    url = "https://registry.example:5000"
    username = "NCRABCDEFGHIJKLMNOPQRST"
    secret = "..."
    cacert = "/etc/ssl/private-ca.pem"

The directory is created 0700 and the file written 0600, atomically (a temporary file in the same
directory, fsynced and renamed over the old one). The file's username and secret are only used for
the URL they were stored with: `--url` naming another server never receives them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:5000"
_KEYS = ("url", "username", "secret", "cacert")


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "ncr-trio"


def config_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "config.toml"


class ConfigError(Exception):
    """The login file cannot be read or written."""


@dataclass
class Stored:
    """What the login file holds (any field may be missing)."""

    url: str | None = None
    username: str | None = None
    secret: str | None = field(default=None, repr=False)
    cacert: str | None = None


def read(path: Path) -> Stored:
    try:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        return Stored()
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    return Stored(**{k: str(values[k]) for k in _KEYS if isinstance(values.get(k), str)})


def _toml_string(value: str) -> str:
    """A TOML basic string: quote and backslash escaped, control characters as \\uXXXX."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def write(path: Path, stored: Stored) -> None:
    """Replace the file atomically, readable by its owner only."""
    lines = ["# ncr-trio CLI login: written by `ncr-trio login`, removed by `ncr-trio logout`"]
    for key in _KEYS:
        value = getattr(stored, key)
        if value is not None:
            lines.append(f"{key} = {_toml_string(value)}")
    text = "\n".join(lines) + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".tmp", dir=path.parent)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e}") from None


def same_server(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def normalize_url(url: str) -> str:
    """`host:port` becomes `http://host:port`; a trailing slash goes."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


@dataclass
class Connection:
    """The server and credentials a command uses, and where each came from (for messages)."""

    url: str
    username: str
    secret: str = field(repr=False)
    cacert: str | None
    url_from: str
    username_from: str
    from_file: bool  # the credentials are the login file's


def resolve(flag_url: str | None, flag_username: str | None, flag_secret: str | None, flag_cacert: str | None,
            env: Mapping[str, str], stored: Stored) -> Connection:
    """Each setting from the first of: flag, environment (`NCR_URL`, `NCR_USERNAME`, `NCR_PASSWORD`,
    `NCR_CACERT`), login file (only for the URL it was stored with), default."""
    if flag_url:
        url, url_from = normalize_url(flag_url), "--url"
    elif env.get("NCR_URL"):
        url, url_from = normalize_url(env["NCR_URL"]), "NCR_URL"
    elif stored.url:
        url, url_from = stored.url, "login"
    else:
        url, url_from = DEFAULT_URL, "default"
    file_applies = stored.url is not None and same_server(stored.url, url)
    if flag_username:
        username, username_from = flag_username, "--username"
    elif env.get("NCR_USERNAME"):
        username, username_from = env["NCR_USERNAME"], "NCR_USERNAME"
    elif file_applies and stored.username:
        username, username_from = stored.username, "login"
    else:
        username, username_from = "", "none"
    from_file = False
    if flag_secret is not None:
        secret = flag_secret
    elif env.get("NCR_PASSWORD"):
        secret = env["NCR_PASSWORD"]
    elif file_applies and stored.secret is not None and stored.username == username:
        secret, from_file = stored.secret, True
    else:
        secret = ""
    cacert = flag_cacert or env.get("NCR_CACERT") or (stored.cacert if file_applies else None)
    return Connection(url, username, secret, cacert, url_from, username_from, from_file)


__all__ = ["DEFAULT_URL", "ConfigError", "Connection", "Stored", "config_dir", "config_path", "normalize_url", "read",
           "resolve", "same_server", "write"]
