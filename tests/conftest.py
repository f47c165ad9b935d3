"""Shared pytest configuration.

Hypothesis profiles (used by tests/test_fuzz.py):

* ``ci`` (default): derandomized, ~60 examples per property, no deadline, so
  the default run is reproducible and takes seconds.
* ``long``: thousands of random (not derandomized) examples per property;
  select it with ``HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py``.
"""
from __future__ import annotations

import os

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test extra; other tests don't need it
    settings = None

if settings is not None:
    _common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("ci", max_examples=60, derandomize=True, print_blob=True, **_common)
    settings.register_profile("long", max_examples=5000, **_common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (tests/test_large.py: > 2^31-element tensors,
    ~11 GB) run only when selected with ``-m slow`` or with MNX_RUN_SLOW=1."""
    import pytest

    if "slow" in (config.getoption("-m") or "") or os.environ.get("MNX_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or MNX_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
