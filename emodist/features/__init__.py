"""Feature groups: the interface, the shared STFT, and the registry of groups.

Each group is one file (:mod:`emodist.features.handcrafted.group`,
:mod:`emodist.features.inception`, ...) holding one
:class:`~emodist.features.base.FeatureGroup` subclass; the registry
(:mod:`emodist.features.registry`) maps the names users type (``--features
handcrafted inception_v3``) to them, the built-in ones registered here.
A group is also made from a model card (:func:`register`), with no code change.

Options (``--model``, ``--musicnn-outputs``...) reach only the groups that
declare them (:attr:`FeatureGroup.options`, option -> field): a group whose
field is named like another group's option never receives that option.
"""

from __future__ import annotations

from emodist.features.base import Bound, FeatureGroup, InputSpec, Segment, WorkerContext
from emodist.features.handcrafted.group import Handcrafted
from emodist.features.inception import InceptionV3
from emodist.features.musicnn import MusiCNN
from emodist.features.registry import REGISTRY, make_group, make_groups, register, split_names

__all__ = ["DEFAULT_GROUPS", "REGISTRY", "Bound", "FeatureGroup", "InputSpec", "Segment",
           "WorkerContext", "make_group", "make_groups", "register", "split_names"]

register(Handcrafted.name, Handcrafted)
register(InceptionV3.name, InceptionV3)
register("musicnn_msd", Bound(MusiCNN, variant="msd"))
register("musicnn_mtt", Bound(MusiCNN, variant="mtt"))

#: Groups extracted when none are named: the handcrafted set and Inception-v3.
DEFAULT_GROUPS = (Handcrafted.name, InceptionV3.name)
