"""The shared comparison rows: differences, claims and the table every study report and the combined one use."""

import pytest

from dlapps.experiments import STUDIES
from dlapps.experiments.base import no_comparisons
from dlapps.report.comparison import HEADERS, Comparison, comparison_section, comparison_table


def test_number_rows_give_signed_differences_to_each_side():
    row = Comparison("accuracy", ours=0.957, writeup=0.96, literature=0.9125, source="He et al.")
    assert row.cells() == ["accuracy", "0.957", "0.960", "-0.003", "0.912", "+0.044", "He et al."]
    only_theirs = Comparison("AUROC", ours=None, writeup=0.63, digits=2)
    assert only_theirs.cells()[1:6] == ["—", "0.63", "—", "—", "—"]


def test_claims_say_whether_they_hold_and_whose_they_are():
    holds = Comparison.claim("skip wins", True, "+1.0 points")
    fails = Comparison.claim("plain degrades", False, "0.40 vs 0.38", by="literature", source="He et al. 2016")
    assert holds.cells() == ["skip wins (write-up)", "holds: +1.0 points", "claimed", "—", "—", "—", ""]
    assert fails.cells()[1:5] == ["**does not hold**: 0.40 vs 0.38", "—", "—", "claimed"]
    with pytest.raises(ValueError, match="by must be"):
        Comparison.claim("x", True, "", by="me")


def test_table_and_section():
    rows = [Comparison("a", ours=1.0, writeup=0.5), Comparison.claim("b", True, "yes")]
    text = comparison_table(rows, first=("study", ["`s1`", "`s2`"]))
    lines = text.splitlines()
    assert lines[0] == "| study | " + " | ".join(HEADERS) + " |" and len(lines) == 4
    assert lines[2].startswith("| `s1` | a | 1.000 | 0.500 | +0.500 |")
    assert comparison_section([]) == [] and comparison_section(rows)[0].startswith("## Against the write-up")


def test_every_study_compares_itself_with_the_write_up_or_the_literature():
    assert all(study.compare is not no_comparisons for study in STUDIES.values())
