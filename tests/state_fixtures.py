"""Run-state helpers for tests that build `state.json` with the driver's own hashes, no phase run."""

from __future__ import annotations

import dataclasses

from loop.phases import PHASES


def placeholder_summary(name: str) -> dict:
    """The phase's summary with its required fields filled (their values do not matter here)."""
    fields = dataclasses.fields(PHASES[name].load().Summary)
    required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {f.name: 0 for f in required}
