"""This run beside the course write-up and the literature: one row shape and one table for every study.

A row compares a number (ours against the write-up's and/or a published one, with the differences) or a
claim (a sentence from the write-up or a paper, and whether this run shows it, with the evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from dlapps.report.markdown import table

HEADERS = ("quantity or claim", "this run", "course write-up", "Δ vs write-up", "literature", "Δ vs literature",
           "source and notes")  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """One compared quantity. ``holds`` set means a claim; otherwise numbers, ``None`` where a side has none."""

    quantity: str
    ours: float | None = None
    writeup: float | None = None
    literature: float | None = None
    source: str = ""
    holds: bool | None = None
    evidence: str = ""
    by: str = ""  # for a claim: whose finding it is, "write-up" or "literature"
    digits: int = 3

    @classmethod
    def claim(cls, text: str, holds: bool, evidence: str, by: str = "write-up", source: str = "") -> Comparison:
        """A qualitative finding of the write-up (``by="write-up"``) or of the literature (``by="literature"``)."""
        if by not in ("write-up", "literature"):
            raise ValueError(f"by must be 'write-up' or 'literature', got {by!r}")
        return cls(quantity=text, holds=holds, evidence=evidence, by=by, source=source)

    @property
    def is_claim(self) -> bool:
        return self.holds is not None

    def cells(self) -> list[str]:
        if self.is_claim:
            verdict = "holds" if self.holds else "**does not hold**"
            claimed, cited = ("claimed", "—") if self.by == "write-up" else ("—", "claimed")
            return [
                f"{self.quantity} ({self.by})",
                f"{verdict}: {self.evidence}",
                claimed,
                "—",
                cited,
                "—",
                self.source,
            ]
        return [
            self.quantity,
            self._number(self.ours),
            self._number(self.writeup),
            self._difference(self.writeup),
            self._number(self.literature),
            self._difference(self.literature),
            self.source,
        ]

    def _number(self, value: float | None) -> str:
        return "—" if value is None else f"{value:.{self.digits}f}"

    def _difference(self, reference: float | None) -> str:
        if reference is None or self.ours is None:
            return "—"
        return f"{self.ours - reference:+.{self.digits}f}"


def comparison_table(rows: Sequence[Comparison], first: tuple[str, list[str]] | None = None) -> str:
    """A Markdown table of ``rows``; ``first`` = (header, one cell per row) adds a leading column."""
    headers = [*([first[0]] if first else []), *HEADERS]
    body = [[*([first[1][i]] if first else []), *row.cells()] for i, row in enumerate(rows)]
    return table(headers, body)


def to_records(rows: Sequence[Comparison]) -> list[dict[str, object]]:
    return [asdict(row) for row in rows]
