"""Every test here that talks to the OpenMetadata simulator runs once per supported release line."""

from __future__ import annotations

import pytest

from tests.fakes.omserver import PROFILE_VERSIONS


@pytest.fixture(params=PROFILE_VERSIONS)
def om_version(request: pytest.FixtureRequest) -> str:
    """The simulated OpenMetadata release (1.5, 1.8, 1.13 and 2.0 lines)."""
    return request.param
