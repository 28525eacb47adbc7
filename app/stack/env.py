"""Typed reads of environment variables that fail loudly, naming the variable.

Settings are read once at startup; a typo must stop the process with a message
that says which variable is wrong and what it accepts, never fall back silently.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str, default: str | None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ImproperlyConfigured(f"environment variable {name} is required but not set")
        return default
    return value


def env_str(name: str, default: str | None = None) -> str:
    return _raw(name, default)


def env_secret(name: str, default: str | None = None) -> str:
    """NAME itself, or the contents of the file NAME_FILE names (Docker's secrets convention)."""
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return _raw(name, default)
    try:
        value = Path(path).read_text().strip()
    except OSError as error:
        raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {error.strerror}") from None
    if not value:
        raise ImproperlyConfigured(f"{name}_FILE={path} is empty")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name, "1" if default else "0").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"environment variable {name} must be one of {sorted(_TRUE | _FALSE)}, got {value!r}")


def env_int(name: str, default: int | None, minimum: int, maximum: int) -> int:
    value = _raw(name, None if default is None else str(default)).strip()
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"environment variable {name} must be an integer, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ImproperlyConfigured(f"environment variable {name} must be between {minimum} and {maximum}, got {number}")
    return number


def env_choice(name: str, default: str | None, choices: tuple[str, ...]) -> str:
    value = _raw(name, default).strip()
    if value not in choices:
        raise ImproperlyConfigured(f"environment variable {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    items = [item.strip() for item in _raw(name, default).split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured(f"environment variable {name} must list at least one value")
    return items
