"""Deprecated: the demo moved to :mod:`alignlab.experiments.demo` (this name goes in the next release)."""

import warnings

from alignlab.experiments.demo import DemoConfig, run_demo, run_demo_command  # noqa: F401

warnings.warn("alignlab.demo moved to alignlab.experiments.demo", DeprecationWarning, stacklevel=2)
