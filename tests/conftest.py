"""Shared test configuration: the Hypothesis profile. (The ``twin`` fixture, compiled
or pure-Python, is in the root conftest.py, shared with benchmarks/.)"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Timing on a shared 2-core machine is noisy: no per-example deadlines.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
