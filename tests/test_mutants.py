"""The planted mutants of tests/mutants.py still apply (their source text is found exactly
once, their tests exist), so the mutation run cannot rot quietly as the code moves. The run
itself is in the README's Development section (it takes minutes)."""

from __future__ import annotations

import pytest
from mutants import MUTANTS, check_applies


def test_mutant_ids_are_unique() -> None:
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids)) and len(ids) >= 50


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_every_mutant_applies(mutant: object) -> None:
    assert check_applies(mutant) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_every_mutant_changes_the_code(mutant: object) -> None:
    assert mutant.old != mutant.new  # type: ignore[attr-defined]
