"""The one cattrs converter of the library, built once.

Hooks live here rather than on a global converter so that users' own cattrs
configuration never changes how we read the upstream or our stores.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, TypeVar
from uuid import UUID

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._events import Event, EventDraft
from ._jobs import Job, RowOutcome


def parse_datetime(value: str | dt.datetime) -> dt.datetime:
    """Parse an ISO-8601 time; a naive one is taken as UTC (the upstream sends naive ones)."""
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


@functools.lru_cache(maxsize=4096)
def _uuid(text: str) -> UUID:
    return UUID(text)


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=False)
    # Rows of one batch share its id: one UUID object each instead of one per row.
    converter.register_structure_hook(UUID, lambda value, _: _uuid(str(value)))
    converter.register_unstructure_hook(UUID, str)
    converter.register_structure_hook(dt.datetime, lambda value, _: parse_datetime(value))
    converter.register_unstructure_hook(dt.datetime, lambda value: value.isoformat())
    # Stores keep the names these fields had before they were renamed, so files and
    # Redis keys written by earlier releases read as they always did.
    for cls, field, stored in (
        (RowOutcome, "creation_batch_id", "batch_id"),
        (EventDraft, "creation_batch_id", "batch_id"),
        (Event, "creation_batch_id", "batch_id"),
        (Job, "creation_batch_ids", "batch_ids"),
    ):
        renamed = {field: override(rename=stored)}
        converter.register_structure_hook(
            cls,
            make_dict_structure_fn(cls, converter, **renamed),  # type: ignore[arg-type]
        )
        converter.register_unstructure_hook(
            cls,
            make_dict_unstructure_fn(cls, converter, **renamed),  # type: ignore[arg-type]
        )
    return converter


converter = make_converter()

T = TypeVar("T")


def structure(data: Any, cls: type[T]) -> T:
    return converter.structure(data, cls)


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)
