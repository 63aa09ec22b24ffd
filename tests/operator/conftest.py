"""Fixtures and helpers live in operator_support.py (a unique module name: every test folder has a conftest)."""

from operator_support import *  # noqa: F403 - registers its fixtures
