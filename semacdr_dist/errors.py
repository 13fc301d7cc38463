"""Errors a user can read: one line naming the key or file, the value and the rule.

Our own errors already say that; this module digs it out of the wrappers around
them (Ray task errors carry a remote traceback, OmegaConf and Hydra errors a
multi-line report) so the CLI can print one line instead of a 200-line trace.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)


class ConfigError(ValueError):
    """A config value breaks its rule. The message names the key, the value and the rule."""

    def __init__(self, key: str, value: object, rule: str):
        self.key, self.value, self.rule = key, value, rule
        super().__init__(f"{key}={value!r}: {rule}")


def as_choice(kind: type[E], value: object, key: str) -> E:
    """``value`` as a member of the string enum ``kind``, or a :class:`ConfigError` naming ``key``.

    Hydra already refuses a bad choice when it composes the config; this covers a config
    dataclass built directly in Python.
    """
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(key, value, f"must be one of {', '.join(m.value for m in kind)}") from None


def _cause(err: BaseException) -> BaseException:
    """The innermost exception worth reporting (through Ray's task/actor wrappers and `raise from`)."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = getattr(err, "cause", None)  # ray.exceptions.RayTaskError / RayActorError
        if isinstance(inner, BaseException):
            err = inner
            continue
        if _ours(err) or err.__cause__ is None:
            return err
        err = err.__cause__
    return err


def _ours(err: BaseException) -> bool:
    return type(err).__module__.startswith("semacdr_dist")


def is_config_error(err: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    inner = _cause(err)
    return isinstance(err, ConfigError | HydraException | OmegaConfBaseException) or isinstance(
        inner, ConfigError | HydraException | OmegaConfBaseException)


def one_line(err: BaseException) -> str:
    """A single line describing ``err`` for the CLI."""
    from omegaconf.errors import OmegaConfBaseException

    inner = _cause(err)
    if isinstance(inner, OmegaConfBaseException):
        msg = str(getattr(inner, "msg", None) or inner).splitlines()[0]
        key = getattr(inner, "full_key", None)
        return f"{key}: {msg}" if key and key not in msg else msg
    text = str(inner).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if type(inner).__name__ == "ConfigCompositionException" or "Could not override" in text:
        # Hydra: "Could not override 'x'. / To append ... / Key 'x' is not in struct"
        return "; ".join(ln for ln in lines if not ln.startswith(("full_key", "object_type", "To append")))
    if not lines:
        return type(inner).__name__
    first = lines[0]
    if _ours(inner) or isinstance(inner, FileNotFoundError | PermissionError):
        return first
    # A foreign error: keep its type, and a trailing "Type: message" line if the first is a banner.
    match = next((m for m in (re.match(r"^(\w+(Error|Exception)): (.+)$", ln) for ln in reversed(lines)) if m), None)
    if match and len(lines) > 1:
        return match.group(0)
    return f"{type(inner).__name__}: {first}"
