"""The original model's per-case scores, kept for the next request against the same model.

Every unlearning run starts by scoring the model it unlearns from (the evaluation hook's "start" evaluation,
which is also a calibrated run's check 0). A deployed model receives one erasure request after another, each
against the same checkpoint, and its scores on a case do not depend on the request: only how the cases group
into forget, retain and held-out sets does. So the start evaluation keeps each case's metrics and membership
scores in a file named by the checkpoint's SHA-256, and a later start evaluation of the same checkpoint
predicts only the cases it has not scored before. A calibrated run that checks on patches
(`evaluation.patch_hook`) keeps its check 0 (the original's patch scores) the same way. Only the start and
check 0 reuse: every later check, and the end, predicts afresh (they score new weights).

An entry is reused only under the same key: the checkpoint's SHA-256, the preprocessed data folder the hook
reads, the variant of the scores (the precision of the predictions, `med3d.cpu_precision.evaluation_precision`,
and for patch scores the patches' number, size, seed and batch: `EvaluationHook.kept_variant`), this package's
version and :data:`FORMAT` (raised whenever the hook's scores change). Each evaluation record lists the cases
it reused (``reused_cases``), and its seconds are what it spent.

Where: ``$nnUNet_unlearning_scores`` when set (the benchmark gives all its runs one folder), else
``<nnUNet_results>/<dataset>/nnunet_unlearning_scores/``, beside nnU-Net's trainer folders and never inside
the original model's folder. Deleting the folder only costs the next run its prediction.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from nnunet_unlearning import __version__
from nnunet_unlearning.evaluation.metrics import CaseMetrics, ClassMetrics
from nnunet_unlearning.files import atomic_write_text
from nnunet_unlearning.records import MembershipScores

#: Raise when the hook's metrics or membership scores change: entries of another format are not reused.
FORMAT = 1
SCORES_ENV = "nnUNet_unlearning_scores"
FOLDER = "nnunet_unlearning_scores"


def scores_folder(results_dataset_folder: Path) -> Path:
    """Where kept scores live: ``$nnUNet_unlearning_scores``, else ``FOLDER`` in the dataset's results folder."""
    chosen = os.environ.get(SCORES_ENV)
    return Path(chosen) if chosen else Path(results_dataset_folder) / FOLDER


class KeptScores:
    """One checkpoint's kept per-case scores under one key (see the module docstring).

    Args:
        folder: where the file lives (`scores_folder`).
        checkpoint_sha256: the scored checkpoint's SHA-256.
        data_folder: the preprocessed data folder the hook reads the cases from.
    """

    def __init__(self, folder: Path, checkpoint_sha256: str, data_folder: Path) -> None:
        self.path = Path(folder) / f"{checkpoint_sha256}.json"
        self._checkpoint = checkpoint_sha256
        self._data = str(Path(data_folder).resolve())
        self._new: dict[str, dict] = {}

    def _key(self, variant: str) -> str:
        return json.dumps([FORMAT, __version__, self._data, variant])

    def _entries(self, variant: str) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            content = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # unreadable or cut short: scored again, and rewritten
        if content.get("checkpoint_sha256") != self._checkpoint:
            return {}
        return content.get("scores", {}).get(self._key(variant), {})

    def get(self, case: str, variant: str) -> tuple[CaseMetrics, MembershipScores] | None:
        """The case's kept metrics and membership scores of ``variant`` (`EvaluationHook.kept_variant`), or None."""
        entry = self._entries(variant).get(case)
        if entry is None:
            return None
        classes = {int(label): ClassMetrics(**values) for label, values in entry["classes"].items()}
        return CaseMetrics(classes=classes, n_valid=entry["n_valid"]), entry["membership"]

    def put(self, case: str, variant: str, metrics: CaseMetrics, membership: MembershipScores) -> None:
        """Note a freshly scored case of ``variant``, for `save`."""
        classes = {str(label): asdict(m) for label, m in metrics.classes.items()}
        self._new.setdefault(variant, {})[case] = {
            "n_valid": metrics.n_valid,
            "classes": classes,
            "membership": dict(membership),
        }

    def save(self) -> None:
        """Add the noted cases to the file (atomically; entries another run wrote meanwhile are kept)."""
        if not self._new:
            return
        scores: dict[str, dict] = {}
        if self.path.is_file():
            try:
                content = json.loads(self.path.read_text())
                if content.get("checkpoint_sha256") == self._checkpoint:
                    scores = content.get("scores", {})
            except (OSError, ValueError):
                scores = {}
        for variant, cases in self._new.items():
            scores.setdefault(self._key(variant), {}).update(cases)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # NaN (an undefined Dice) is kept as JSON's NaN literal, so that a reused case equals a fresh one
        text = json.dumps({"checkpoint_sha256": self._checkpoint, "scores": scores}, allow_nan=True)
        atomic_write_text(self.path, text)
        self._new = {}


def without_cases(path: Path, cases: set[str]) -> str | None:
    """A kept-scores file's text without the entries of ``cases`` (for `workflows.erase`), or None when it holds
    none of them."""
    content = json.loads(Path(path).read_text())
    scores = content.get("scores", {})
    if not any(cases & set(entries) for entries in scores.values()):
        return None
    content["scores"] = {key: {c: e for c, e in entries.items() if c not in cases} for key, entries in scores.items()}
    return json.dumps(content, allow_nan=True)
