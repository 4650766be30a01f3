"""One YAML reader for every room: numbers are numbers, as YAML 1.2 and JSON read them.

PyYAML implements YAML 1.1, whose float pattern needs a dot and a signed exponent, so ``3e-3``,
``1e5`` and ``-3E-3`` load as *strings*. A config that says ``peak: 3e-3`` would then carry a
string into the trainer, into saved configs and into format strings. The loader below adds the
YAML 1.2 core-schema float pattern, so the coercion happens once, at load, for every file and
``--set`` value evertrain reads. Strings that are quoted in the YAML stay strings.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["YAMLError", "dump", "load"]

YAMLError = yaml.YAMLError


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus YAML 1.2 floats (``1e5``, ``3e-3``, ``.5``, ``-2.5E+3``)."""


# Copy the resolver table so the change stays local to this loader class.
_Loader.yaml_implicit_resolvers = {
    key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _float_constructor(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    text = loader.construct_scalar(node)
    # YAML 1.1's int resolver runs first for plain integers; anything that reached the float
    # tag but is an integer literal (``10`` never does; ``1_000`` may) stays exact.
    try:
        return int(text.replace("_", ""))
    except ValueError:
        return loader.construct_yaml_float(node)


_Loader.add_constructor("tag:yaml.org,2002:float", _float_constructor)


def load(text: str) -> Any:
    """Parse YAML (or JSON, a subset) text with numbers read as YAML 1.2 reads them."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass


def dump(data: Any, **kwargs: Any) -> str:
    """``yaml.safe_dump`` (floats come out as ``0.003``, which every YAML reader parses)."""
    kwargs.setdefault("sort_keys", False)
    return yaml.safe_dump(data, **kwargs)
