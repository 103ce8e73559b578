"""Shared test setup."""

from __future__ import annotations

import pytest

# The storage conformance suite lives in a plain module; rewrite its asserts for useful failures.
pytest.register_assert_rewrite("conformance")
