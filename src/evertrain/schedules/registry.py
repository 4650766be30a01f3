"""Factory by name and spec parsing: ``get``, ``from_spec``, ``register``.

A spec is a dict ``{"name": "wsd", "peak": 3e-4, ...}``, an inline string
``"wsd:peak=3e-4,total=24000,warmup=2160"`` (numbers parsed; lists in brackets, e.g.
``"piecewise_linear:points=[[0,1e-3],[100,1e-4]]"``), or a path to a ``.yaml``/``.json`` file
holding such a dict (optionally under a top-level ``schedule:`` key).
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
from pathlib import Path
from typing import Any

# The package-root YAML reader (numbers as YAML 1.2 reads them), not another room of evertrain.
from evertrain import _yaml
from evertrain.schedules.base import Schedule, ScheduleError

_REGISTRY: dict[str, type[Schedule]] = {}
# Other spellings people use for the same schedule; specs always serialise the canonical name.
ALIASES = {
    "warmup_stable_decay": "wsd",
    "trapezoidal": "wsd",
    "wsds": "wsd_s",
    "one_cycle": "onecycle",
    "rsqrt": "inverse_sqrt",
    "multi_step": "multistep",
    "cosine_with_restarts": "sgdr",
    "cosine_annealing_warm_restarts": "sgdr",
    "piecewise": "piecewise_linear",
}


def canonical_name(name: str) -> str:
    """``"WSD-S"`` -> ``"wsd_s"``: case-insensitive, ``-`` as ``_``, aliases resolved."""
    key = name.strip().lower().replace("-", "_")
    return ALIASES.get(key, key)


_SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def register(cls: type[Schedule]) -> type[Schedule]:
    """Class decorator: make ``cls`` constructible by ``get(cls.name, ...)``."""
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """All registered schedule names, sorted."""
    return sorted(_REGISTRY)


def accepted_parameters(name: str) -> list[str]:
    """The parameter names schedule ``name`` accepts (for error messages and the CLI)."""
    signature = inspect.signature(_REGISTRY[name].__init__)
    return [p for p in signature.parameters if p != "self"]


def get(name: str | Schedule, **params: Any) -> Schedule:
    """Build a schedule by name: ``get("wsd", peak=3e-4, total=24000, warmup=2160)``.

    Raises:
        ScheduleError: unknown name (with a "did you mean" suggestion), unknown parameter (naming
            the accepted ones), missing parameter, or an invalid value.
    """
    if isinstance(name, Schedule):
        if params:
            raise ScheduleError("get(schedule, ...): extra parameters given with a Schedule")
        return name
    if isinstance(name, str) and name not in _REGISTRY:
        name = canonical_name(name)
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScheduleError(
            f"unknown schedule name={name!r}{hint}; known schedules: {', '.join(names())}"
        )
    cls = _REGISTRY[name]
    accepted = accepted_parameters(name)
    unknown = [key for key in params if key not in accepted]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, accepted, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ScheduleError(
            f"{name}: unknown parameter {', '.join(hints)}; accepted: {', '.join(accepted)}"
        )
    signature = inspect.signature(cls.__init__)
    missing = [
        p.name
        for p in signature.parameters.values()
        if p.name != "self"
        and p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in params
    ]
    if missing:
        raise ScheduleError(
            f"{name}: missing required parameter {', '.join(repr(m) for m in missing)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return cls(**params)


def parse_value(text: str) -> Any:
    """Parse one inline value: int, float, bool, null, a JSON/YAML list or dict, else a string."""
    text = text.strip()
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            try:
                return _yaml.load(text)
            except _yaml.YAMLError as error:
                raise ScheduleError(f"cannot parse inline value {text!r}: {error}") from None
    return text


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets or braces."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def parse_inline(text: str) -> dict[str, Any]:
    """``"wsd:peak=3e-4,total=24000"`` -> ``{"name": "wsd", "peak": 0.0003, "total": 24000}``."""
    name, _, rest = text.partition(":")
    spec: dict[str, Any] = {"name": name.strip()}
    for item in _split_top_level(rest):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ScheduleError(
                f"inline spec {text!r}: {item.strip()!r} is not key=value; "
                "write name:key=value,key=value (e.g. 'wsd:peak=3e-4,total=24000,warmup=2160')"
            )
        spec[key.strip()] = parse_value(value)
    return spec


def load_spec_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml``/``.json`` spec file (a dict, or a dict under ``schedule:``)."""
    path = Path(path)
    if not path.exists():
        raise ScheduleError(f"schedule spec file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = _yaml.load(text)
    except Exception as error:  # noqa: BLE001 -- any parse failure becomes a clear message
        raise ScheduleError(f"cannot parse schedule spec file {str(path)!r}: {error}") from None
    if isinstance(data, dict) and "name" not in data and isinstance(data.get("schedule"), dict):
        data = data["schedule"]
    if isinstance(data, str):
        return parse_inline(data)
    if not isinstance(data, dict):
        raise ScheduleError(
            f"schedule spec file {str(path)!r} must hold a mapping with a 'name' key, "
            f"got {type(data).__name__}"
        )
    return data


def from_spec(spec: dict[str, Any] | str | os.PathLike[str] | Schedule) -> Schedule:
    """Build a schedule from a dict, an inline ``name:key=value,...`` string or a YAML/JSON path.

    ``from_spec(s.to_spec())`` evaluates identically to ``s`` for every schedule, composites
    included (their children are specs too).
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, os.PathLike):
        spec = load_spec_file(spec)
    elif isinstance(spec, str):
        text = spec.strip()
        if text.lower().endswith(_SPEC_SUFFIXES) or (":" not in text and Path(text).is_file()):
            spec = load_spec_file(text)
        else:
            spec = parse_inline(text)
    if not isinstance(spec, dict):
        raise ScheduleError(
            f"a schedule spec must be a dict, an inline 'name:key=value' string or a path to a "
            f".yaml/.json file, got {type(spec).__name__}"
        )
    if "name" not in spec:
        raise ScheduleError(
            f"schedule spec {spec!r} has no 'name': add e.g. name: wsd "
            f"(known: {', '.join(names())})"
        )
    params = dict(spec)
    name = params.pop("name")
    return get(name, **params)
