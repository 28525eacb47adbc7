"""The one reader of .env, for the Makefile, the tests and the bench (docker compose reads it itself).

.env holds KEY=VALUE lines; blank lines and lines starting with # are skipped, and comments stay
on their own lines (make and compose disagree about trailing ones). Keys and values are stripped
of surrounding spaces and otherwise taken literally: no quotes, no ${...} interpolation (compose
does that for COMPOSE_PROFILES=${APP_SERVER}; nothing else here needs it). read_dotenv never
looks at the environment: each caller decides whether a variable set there wins (tests/harness.py
puts .env over the environment it inherits); setting() is the shell-wins reading, as the
Makefile's `?=` and compose do it, for the scripts that run beside them (scale.py, the bench).

    python3 scripts/dotenv_file.py NAME [NAME ...]

prints each value on its own line, in order. If one is missing it prints nothing, names it on
stderr and exits 1. The module name is not `dotenv`, which is python-dotenv's import name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOTENV = Path(__file__).resolve().parent.parent / ".env"


def read_dotenv(path: Path = DOTENV) -> dict[str, str]:
    """The KEY=VALUE lines of `path`; a later line for the same key wins, as in compose."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line: {line!r}")
        values[key.strip()] = value.strip()
    return values


def setting(name: str, path: Path = DOTENV) -> str | None:
    """A shared setting as make and compose see it: the environment's value if set and not empty,
    else .env's; None when neither has it."""
    return os.environ.get(name) or read_dotenv(path).get(name)


def main(argv: list[str]) -> int:
    if not argv or any(name.startswith("-") for name in argv):
        print("usage: dotenv_file.py NAME [NAME ...]  (prints each value of .env on its own line)", file=sys.stderr)
        return 2
    values = read_dotenv()
    missing = [name for name in argv if name not in values]
    if missing:
        print(f"dotenv_file.py: not set in {DOTENV}: {', '.join(missing)}", file=sys.stderr)
        return 1
    print("\n".join(values[name] for name in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
