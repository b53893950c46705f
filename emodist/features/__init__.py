"""Feature groups: the interface, the shared STFT, and the registry of groups.

Each group is one file (:mod:`emodist.features.handcrafted.group`,
:mod:`emodist.features.inception`, ...) holding one
:class:`~emodist.features.base.FeatureGroup` subclass; :data:`REGISTRY` maps
the names users type (``--features handcrafted inception_v3``) to them.
A group is also made from a model card (:func:`register`), with no code change.

Options (``--model``, ``--musicnn-outputs``...) reach only the groups that
declare them (:attr:`FeatureGroup.options`, option -> field): a group whose
field is named like another group's option never receives that option.
"""

from __future__ import annotations

from emodist.errors import EmodistError
from emodist.features.base import Bound, FeatureGroup, InputSpec, Segment, WorkerContext, check_name
from emodist.features.handcrafted.group import Handcrafted
from emodist.features.inception import InceptionV3
from emodist.features.musicnn import MusiCNN

#: Group name -> group class (or factory taking the group's parameters).
REGISTRY: dict[str, type] = {Handcrafted.name: Handcrafted, InceptionV3.name: InceptionV3,
                             "musicnn_msd": Bound(MusiCNN, variant="msd"),
                             "musicnn_mtt": Bound(MusiCNN, variant="mtt")}
#: Groups extracted when none are named: the handcrafted set and Inception-v3.
DEFAULT_GROUPS = (Handcrafted.name, InceptionV3.name)

__all__ = ["DEFAULT_GROUPS", "REGISTRY", "Bound", "FeatureGroup", "InputSpec", "Segment",
           "WorkerContext", "make_group", "make_groups", "register", "split_names"]


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
