"""Every study, once built on the smoke preset, has nothing left to do: a second run re-runs no
rule (no rule's code, library digest, params or inputs look changed). One test per study, on
the run that study's workflow tests share (conftest.smoke_study)."""

import pytest

from conftest import snakemake

pytestmark = pytest.mark.workflow

STUDIES = ("rebasin", "repair", "retrofit", "separability", "drift")


@pytest.mark.parametrize("study", STUDIES)
def test_a_second_run_of_a_study_does_nothing(smoke_study, study):
    result = snakemake(smoke_study(study), "-n", study)
    assert "Nothing to be done" in result.stdout + result.stderr
