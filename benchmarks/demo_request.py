"""The starting point several benchmarks share: the demo's world, its original model, a forget request.

The demo's CPU profile and Med3D plans, real MRBrainS18 from ../shared/data when present (else the
phantom), the demo's original Med3D model, and a request forgetting the original's first training case.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "MRBrainS18"


def demo_request(workdir: Path | None, prefix: str, reuse: bool = False) -> tuple[str, str]:
    """Build everything under ``workdir`` (a new temporary folder when None); return (data, forgotten case),
    ``data`` saying whether the real MRBrainS18 release or the phantom was used. With ``reuse``, take the
    world, original model and request an earlier call left in ``workdir`` (an interrupted benchmark)."""
    from nnunet_unlearning.request import load_request, write_request
    from nnunet_unlearning.workflows import demo, profiles
    from nnunet_unlearning.workflows.original_trainer import original_trainer

    real = SHARED if (SHARED / "training").is_dir() else None
    if reuse and workdir is not None:
        os.environ.update(
            {name: str(workdir / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
        )
        os.environ["nnUNet_compile"] = "false"
        profiles.CPU.use_for_training()
        return ("MRBrainS18 (real)" if real else "phantom"), load_request(demo.DATASET_NAME, "0").forget[0]
    demo.prepare_dataset(workdir or Path(tempfile.mkdtemp(prefix=prefix)), real)
    trainer, _ = original_trainer(demo.PROFILE.scratch_trainer)
    original = demo.train(trainer, demo.ORIGINAL)
    forget = sorted(original.do_split()[0])[0]
    write_request(demo.DATASET_ID, demo.CONFIGURATION, "0", demo.PLANS, trainer, [forget])
    return ("MRBrainS18 (real)" if real else "phantom"), forget
