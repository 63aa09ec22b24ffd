"""Fixtures and helpers live in node_support.py (a unique module name: every test folder has a conftest)."""

from node_support import *  # noqa: F403 - registers its fixtures
