"""Fixtures and helpers live in manifests_support.py (a unique module name: every test folder has a conftest)."""

from manifests_support import *  # noqa: F403 - registers its fixtures
