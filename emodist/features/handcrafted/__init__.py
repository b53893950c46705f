"""Handcrafted features (being split into modules by feature family)."""

from emodist.features.handcrafted.timbre import *  # noqa: F401,F403
