"""Time the MRBrainS18 converter against plainly reading and writing the same files with nibabel.

Both run side by side in one process, alternating which goes first in each repetition, after one
untimed warm-up of each (so both read from the page cache). The baseline loads every source file the
converter reads (nib.load, voxels into memory) and saves it again (nib.save, .nii.gz); the converter
also hashes, checks and remaps. Prints per-repetition times, medians and their ratio.

    .venv/bin/python benchmarks/convert.py                      # real data, orig/ IR FLAIR, 7 subjects
    .venv/bin/python benchmarks/convert.py --phantom 7          # no real data: a phantom, pre/ T1 IR FLAIR
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from nnunet_unlearning.conversion.mrbrains18 import LABEL_SETS, MODALITIES, SOURCES, convert_mrbrains18
from nnunet_unlearning.conversion.phantom import write_phantom

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "MRBrainS18"


def _convert(src: Path, out: Path, args: argparse.Namespace) -> Path:
    return convert_mrbrains18(
        src, 999, modalities=args.modalities, source=args.source, labels=args.labels, raw_root=out
    )


def _plain_copy(files: list[Path], out: Path) -> None:
    out.mkdir()
    for index, path in enumerate(files):
        image = nib.load(path)
        if not isinstance(image, nib.Nifti1Image):
            raise TypeError(f"{path}: not a NIfTI-1 image")
        data = np.asanyarray(image.dataobj)
        nib.save(nib.Nifti1Image(data, image.affine, image.header), out / f"{index}.nii.gz")


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REAL, help="MRBrainS18 release (default: the shared copy)")
    parser.add_argument("--phantom", type=int, metavar="N", help="benchmark a fresh N-subject phantom instead")
    parser.add_argument("--source", choices=SOURCES, default=None, help="default: orig (real), pre (phantom)")
    parser.add_argument(
        "--modalities",
        nargs="+",
        choices=MODALITIES,
        default=None,
        help="default: IR FLAIR (real: T1 is missing for 3 subjects), T1 IR FLAIR (phantom)",
    )
    parser.add_argument("--labels", choices=LABEL_SETS, default="challenge")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        work = Path(tmp)
        src = args.src
        if args.phantom:
            src = work / "phantom"
            write_phantom(src, n_subjects=args.phantom)
        args.source = args.source or ("pre" if args.phantom else "orig")
        args.modalities = args.modalities or (list(MODALITIES) if args.phantom else ["IR", "FLAIR"])

        # warm-up (untimed): fills the page cache and tells the baseline which files the converter reads
        record = json.loads((_convert(src, work / "warm_raw", args) / "subjects.json").read_text())
        files = [src / entry["path"] for case in record["cases"].values() for entry in case["files"].values()]
        _plain_copy(files, work / "warm_plain")
        size_mb = sum(p.stat().st_size for p in files) / 1e6

        converter: list[float] = []
        plain: list[float] = []
        for rep in range(args.repeats):
            runs = [
                (converter, _convert, (src, work / f"raw{rep}", args)),
                (plain, _plain_copy, (files, work / f"plain{rep}")),
            ]
            for times, function, call_args in runs if rep % 2 == 0 else runs[::-1]:
                times.append(_timed(function, *call_args))
            shutil.rmtree(work / f"raw{rep}")
            shutil.rmtree(work / f"plain{rep}")

    print(
        f"source: {'phantom' if args.phantom else src}  --source {args.source} --modalities "
        f"{' '.join(args.modalities)} --labels {args.labels}"
    )
    print(f"{len(record['cases'])} cases, {len(files)} files, {size_mb:.1f} MB compressed, {args.repeats} repeats")
    print("converter  s: " + " ".join(f"{t:.3f}" for t in converter))
    print("nibabel    s: " + " ".join(f"{t:.3f}" for t in plain))
    median_c, median_p = statistics.median(converter), statistics.median(plain)
    print(f"median converter {median_c:.3f} s, nibabel read+write {median_p:.3f} s, ratio {median_c / median_p:.2f}")


if __name__ == "__main__":
    main()
