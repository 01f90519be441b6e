"""Recognising a header row and mapping its columns to name, address and phone."""

from __future__ import annotations

import re

import attrs

from hospital_bulk._models import Finding, FindingCode, Severity

REQUIRED = ("name", "address")
COLUMNS = ("name", "address", "phone")

# Header cells are compared after trimming, case folding and turning runs of spaces,
# hyphens and underscores into one "_": "Hospital Name" is "hospital_name".
ALIASES = {
    "name": "name",
    "hospital_name": "name",
    "hospital": "name",
    "address": "address",
    "hospital_address": "address",
    "street_address": "address",
    "location": "address",
    "phone": "phone",
    "phone_number": "phone",
    "telephone": "phone",
    "tel": "phone",
    "contact_number": "phone",
}

_SEPARATORS = re.compile(r"[\s_\-]+")


def _canonical(cell: str) -> str | None:
    return ALIASES.get(_SEPARATORS.sub("_", cell.strip().lstrip("\ufeff").strip().casefold()))


def is_header(cells: list[str]) -> bool:
    """Every non-empty cell is a column name, or name and address are both there.

    The second rule lets extra columns through (``name,address,notes``) while a data
    row such as ``General Hospital,12 Main St`` never passes for a header.
    """
    known = [_canonical(cell) for cell in cells if cell.strip()]
    return bool(known) and (all(known) or set(REQUIRED) <= set(known))


@attrs.frozen
class Layout:
    """Where the columns of a row are. ``width`` is the number of cells every row must have."""

    width: int
    name: int = 0
    address: int = 1
    phone: int | None = 2
    header: tuple[str, ...] | None = None


def headerless_layout(width: int) -> Layout:
    """Without a header a row is ``name, address[, phone]``."""
    return Layout(width=3 if width >= 3 else 2, phone=2 if width >= 3 else None)


def header_layout(cells: list[str], line: int) -> tuple[Layout | None, list[Finding]]:
    """The layout a header describes, or ``None`` when it lacks or repeats a column."""
    findings = []
    where: dict[str, int] = {}
    for index, cell in enumerate(cells):
        column = _canonical(cell)
        label = cell.strip().lstrip("\ufeff").strip()
        if column is None:
            findings.append(_unknown(index, label, line))
        elif column in where:
            first = cells[where[column]].strip()
            findings.append(
                Finding(
                    code=FindingCode.DUPLICATE_COLUMN,
                    message=(
                        f"columns {where[column] + 1} ({first!r}) and {index + 1} ({label!r})"
                        f" both mean {column}; keep only one of them"
                    ),
                    line=line,
                    column=column,
                    value=label,
                )
            )
        else:
            where[column] = index
    for column in REQUIRED:
        if column not in where:
            names = ", ".join(name for name, canonical in ALIASES.items() if canonical == column)
            findings.append(
                Finding(
                    code=FindingCode.MISSING_COLUMN,
                    message=f"the header has no {column} column; add one (accepted names: {names})",
                    line=line,
                    column=column,
                )
            )
    if any(finding.severity is Severity.ERROR for finding in findings):
        return None, findings
    layout = Layout(
        width=len(cells),
        name=where["name"],
        address=where["address"],
        phone=where.get("phone"),
        header=tuple(cell.strip() for cell in cells),
    )
    return layout, findings


def _unknown(index: int, label: str, line: int) -> Finding:
    if label:
        message = (
            f"column {index + 1} ({label!r}) is not one of name, address, phone"
            " (or their aliases); its values are ignored"
        )
    else:
        message = f"column {index + 1} has no name in the header; its values are ignored"
    return Finding(
        code=FindingCode.UNKNOWN_COLUMN,
        message=message,
        line=line,
        column=label or None,
        value=label,
        severity=Severity.WARNING,
    )
