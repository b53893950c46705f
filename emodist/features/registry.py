"""The registry of feature groups: the names users type, and groups made from them.

:data:`REGISTRY` maps a group name (``--features handcrafted inception_v3``)
to its class or factory; :mod:`emodist.features` fills it with the built-in
groups, and :func:`register` adds more (a model card, a plug-in) with no
code change.
"""

from __future__ import annotations

from emodist.errors import EmodistError
from emodist.features.base import FeatureGroup, check_name

__all__ = ["REGISTRY", "make_group", "make_groups", "register", "split_names"]

#: Group name -> group class (or factory taking the group's parameters).
REGISTRY: dict[str, type] = {}


def register(name: str, factory) -> None:
    """Add a group factory under ``name`` (a model card, a plug-in)."""
    REGISTRY[check_name(name)] = factory


def split_names(spec) -> list[str]:
    """Group names of a feature-set spec: ``"a+b"`` and lists of those, in order, once each."""
    tokens = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for tok in tokens:
        for name in str(tok).split("+"):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


def make_group(name: str, options: dict | None = None) -> FeatureGroup:
    """The group ``name`` with the options it declares taken from ``options``.

    Parameters
    ----------
    name : str
        A registered group name.
    options : dict, optional
        Option name -> value, shared by every group asked for; each group
        takes only the options its factory declares in ``options`` (option
        -> field: :attr:`FeatureGroup.options`, :attr:`Bound.options`) and
        ignores the rest (``None`` values are ignored).

    Raises
    ------
    EmodistError
        An unknown group name.
    """
    factory = REGISTRY.get(name)
    if factory is None:
        raise EmodistError(f"unknown feature group {name!r}; choose from {', '.join(REGISTRY)}")
    given = options or {}
    declared = getattr(factory, "options", None) or {}
    return factory(**{field: given[opt] for opt, field in declared.items()
                      if given.get(opt) is not None})


def make_groups(names, options: dict | None = None) -> tuple[FeatureGroup, ...]:
    """Groups for ``names`` (``+``-joined names allowed), each made by :func:`make_group`."""
    return tuple(make_group(n, options) for n in split_names(names))
