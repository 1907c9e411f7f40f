"""Studies: specs, the local runner, and the report."""

from encoderlab.study.runner import run_study, study_status
from encoderlab.study.spec import StudySpec, load_study

__all__ = ["StudySpec", "load_study", "run_study", "study_status"]
