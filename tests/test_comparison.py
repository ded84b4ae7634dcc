"""The shared comparison rows: differences, claims and the table every study report and the combined one use."""

import pytest

from dlapps.experiments import STUDIES, Study
from dlapps.report.comparison import HEADERS, Comparison, comparison_table
from dlapps.report.markdown import Heading
from dlapps.report.study import COMPARISON_TITLE, comparison_blocks


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
    mlp = STUDIES["residual-mlp"]
    blocks = comparison_blocks(mlp, mlp.config("quick"), {}, rows)
    assert blocks[0] == Heading(COMPARISON_TITLE) and blocks[2] == comparison_table(rows)


def test_a_setup_without_reference_says_why():
    mlp = STUDIES["residual-mlp"]
    assert comparison_blocks(mlp, mlp.config("quick"), {}, []) == []  # MNIST, width 16: the reference setup
    other = mlp.config("quick", ["dataset=cifar10"])
    blocks = comparison_blocks(mlp, other, {}, [])
    assert blocks[1] == (
        "No published figure applies to this run: the write-up's MLP results are on MNIST; this run is on CIFAR-10"
    )
    assert mlp.compare(other, {"summary": []}) == []


def test_every_study_of_the_write_up_compares_itself_with_it_or_the_literature():
    reproduced = [study for study in STUDIES.values() if study.exercise]
    assert len(reproduced) == 7
    assert all(type(study).compare is not Study.compare for study in reproduced)
    assert all(type(study).no_reference is not Study.no_reference for study in reproduced)
