"""The store contract (``hospital_bulk.testing.store_contract``), run against each store.

A later store joins with one more subclass.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from hospital_bulk import JobStore, MemoryStore
from hospital_bulk.stores.sqlite import SqliteStore
from hospital_bulk.testing.rate_gate_contract import SharedRateGateContract
from hospital_bulk.testing.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    """The contract on MemoryStore."""

    @pytest.fixture(name="store")
    async def fixture_store(self) -> AsyncIterator[JobStore]:
        """A fresh MemoryStore for every test."""
        store = MemoryStore()
        try:
            yield store
        finally:
            await store.aclose()

    async def test_it_offers_no_shared_rate_gate(self, store: JobStore) -> None:
        """One process's memory: each processor paces in its own."""
        assert store.rate_gate(None, None, 1.0) is None


class TestSqliteStore(StoreContract, SharedRateGateContract):
    """The contract on SqliteStore, a new file for every test."""

    @pytest.fixture(name="store")
    async def fixture_store(self, tmp_path: pathlib.Path) -> AsyncIterator[JobStore]:
        """A fresh SqliteStore for every test."""
        store = await SqliteStore.open(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
        try:
            yield store
        finally:
            await store.aclose()


class TestRedisStore(StoreContract, SharedRateGateContract):
    """The contract on RedisStore; skipped without a Redis, failed if one is required."""

    @pytest.fixture(name="store")
    async def fixture_store(self) -> AsyncIterator[JobStore]:
        """A fresh RedisStore for every test, in its own namespace, deleted by aclose()."""
        from .redis_server import scratch_store  # redis-py is an optional extra

        store = await scratch_store()
        try:
            yield store
        finally:
            await store.aclose()
