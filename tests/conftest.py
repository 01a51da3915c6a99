"""Shared pytest fixtures. Tests that need ../shared/data use `shared` and skip with a reason when it is absent,
except where POSEBENCH_REQUIRE_SHARED=1 (CI), where its absence fails the test."""
import os

import pytest

from posebench.test_utils import shared_data


@pytest.fixture(scope='session')
def shared():
    p = shared_data(required=os.environ.get('POSEBENCH_REQUIRE_SHARED') == '1')
    if p is None: pytest.skip('../shared/data not found (set POSEBENCH_SHARED_DATA)')
    return p
