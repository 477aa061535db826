"""The ``nnunet-unlearning`` command: parses arguments, then calls one library function per subcommand.

Library modules are imported inside each handler, so ``nnunet-unlearning trainers-dir`` answers without
loading torch. A :class:`~nnunet_unlearning.errors.UserInputError` becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nnunet_unlearning.errors import UserInputError


def _trainers_dir(args: argparse.Namespace) -> None:
    from nnunet_unlearning.nnunet.trainers_dir import trainers_dir

    print(trainers_dir())


def _convert_mrbrains18(args: argparse.Namespace) -> None:
    from nnunet_unlearning.conversion.mrbrains18 import convert_mrbrains18

    folder = convert_mrbrains18(
        args.src,
        args.dataset_id,
        modalities=args.modalities,
        source=args.source,
        labels=args.labels,
        subjects=args.subjects,
        overwrite=args.overwrite,
    )
    print(f"wrote {folder}")


def _phantom(args: argparse.Namespace) -> None:
    from nnunet_unlearning.conversion.phantom import write_phantom

    ids = write_phantom(args.out, n_subjects=args.subjects, seed=args.seed)
    print(f"wrote a synthetic MRBrainS18-layout release with {len(ids)} subjects to {args.out}")


def _med3d_check(args: argparse.Namespace) -> None:
    from nnunet_unlearning.med3d.checkpoint import check_medicalnet_file

    print(check_medicalnet_file(args.weights, depth=args.depth, in_channels=args.in_channels).summary())


def _plan_med3d(args: argparse.Namespace) -> None:
    from nnunet_unlearning.med3d.plans import plan_med3d

    path = plan_med3d(
        args.dataset_id,
        configuration=args.configuration,
        depth=args.depth,
        source_plans=args.source_plans,
        name=args.name,
        gpu_memory_gb=args.gpu_memory_gb,
        cpu_bf16=args.cpu_bf16,
        mirror=args.mirror,
    )
    print(f"wrote {path}")


def _forget(args: argparse.Namespace) -> None:
    from nnunet_unlearning.artifacts import chained_trainer_folder_name
    from nnunet_unlearning.evidence.certificate import verify_certificate
    from nnunet_unlearning.files import atomic_write_text
    from nnunet_unlearning.request import build_fold_requests, build_request, default_request_path, request_set_json
    from nnunet_unlearning.unlearning.run_config import read_config

    if args.subject_map is not None and args.subjects is None:
        raise UserInputError(f"{args.subject_map}: --subject-map resolves --subjects; it cannot be used with --cases")
    run_config = read_config(args.config) if args.config is not None else None
    what = (args.cases or [], run_config)
    if len(args.folds) == 1:
        requests = {
            args.folds[0]: build_request(
                args.dataset_id, args.configuration, args.folds[0], args.plans, args.trainer, *what,
                subjects=args.subjects, subject_csv=args.subject_map,
            )
        }  # fmt: skip
    else:
        requests = build_fold_requests(
            args.dataset_id, args.configuration, args.folds, args.plans, args.trainer, *what,
            subjects=args.subjects, subject_csv=args.subject_map,
        )  # fmt: skip
    for request in requests.values():
        if request.previous is not None:
            # a chain is only as good as its last link: the model this request starts from must still be the
            # certified one, with the evidence it was certified on
            certificate = Path(request.previous["certificate"])
            checked = verify_certificate(certificate)
            if not checked.ok:
                failed = checked.first_finding
                raise UserInputError(f"{certificate}: the previous request's certificate fails verify ({failed})")
    first = next(iter(requests.values()))
    path = Path(args.out) if args.out is not None else default_request_path(first.dataset_name)
    atomic_write_text(path, first.to_json() if len(requests) == 1 else request_set_json(requests))
    for fold, request in requests.items():
        head = f"fold {fold}: " if len(requests) > 1 else ""
        if request.untouched:
            print(
                f"{head}never trained on {', '.join(request.forget)} (its validation split): nothing to unlearn; "
                "its run keeps the model and certifies it"
            )
        elif len(requests) > 1:
            print(f"{head}forget {', '.join(request.forget)}")
        if request.forgotten_before:
            print(f"{head}forgotten by earlier requests of this model lineage: {' '.join(request.forgotten_before)}")
            name = chained_trainer_folder_name("<Trainer>", request.run_name_id)
            print(f"{head}its runs train into {name}__{args.plans}__{args.configuration}/fold_{fold} (-tr <Trainer>)")
    print(f"wrote {path}")


def _evaluate(args: argparse.Namespace) -> None:
    from nnunet_unlearning.evaluation.evaluate_folders import evaluate_folders

    path = evaluate_folders(args.gt, args.pred, protocol=args.protocol, out=args.out, labels=args.labels)
    print(f"wrote {path}")


def _audit(args: argparse.Namespace) -> None:
    from nnunet_unlearning.evaluation.audit import run_audit
    from nnunet_unlearning.evidence.audit_table import write_audit_evidence

    path = run_audit(
        args.run_folders,
        out=args.out,
        request_file=args.request,
        patches_per_case=args.patches_per_case,
        bootstrap=args.bootstrap,
        seed=args.seed,
        patch_size=args.patch_size,
        device=args.device,
    )
    print(write_audit_evidence(path).read_text())  # the table, and the certificates that pin the audit again
    print(f"wrote {path}")


def _report(args: argparse.Namespace) -> None:
    from nnunet_unlearning.evidence.report import write_report

    path = write_report(args.runs, args.out, original=args.original, retrain=args.retrain, groups=args.groups)
    print(f"wrote {path}")


def _verify(args: argparse.Namespace) -> int:
    from nnunet_unlearning.evidence.certificate import verify_certificate

    result = verify_certificate(args.certificate)
    print("\n".join(result.lines))
    if args.require_met and result.verdict != "met":
        print(f"--require-met: the overall verdict is {result.verdict or 'not stated'}, not met")
        return 1
    return 0 if result.ok else 1


def _export(args: argparse.Namespace) -> None:
    from nnunet_unlearning.workflows.export import export_run

    export = export_run(args.run, args.out, strict=args.strict)
    print("\n".join([f"wrote {export.path}", *(f"  {name}" for name in export.members)]))
    if export.strict is not None:
        print("\n".join(export.strict.lines()))
    if export.needs_plugin:
        print(
            f"note: the network {export.needs_plugin} is not part of nnU-Net; nnUNetv2_predict needs "
            "nnunet-unlearning installed to run this model"
        )


def _strict_plans(args: argparse.Namespace) -> None:
    from nnunet_unlearning.workflows.strict_fingerprint import write_strict_plans

    written = write_strict_plans(args.request, args.name, args.fold)
    fingerprint, request = written.fingerprint, written.request
    print("\n".join([f"wrote {written.path}", *fingerprint.lines()]))
    configuration = request.original.configuration
    train = (
        f"nnUNetv2_train {request.dataset_id} {configuration} {request.original.fold} -tr nnUNetTrainerRetrain "
        f"-p {written.name}"
    )
    if fingerprint.input_changes:
        print(
            "a channel's normalised input changes: preprocess for the new plans first (nnUNetv2_preprocess -d "
            f"{request.dataset_id} -plans_name {written.name} -c {configuration}), then train the oracle: {train}"
        )
    else:
        print(f"no channel's normalised input changes, the preprocessed data stays valid; train the oracle: {train}")


def _erase(args: argparse.Namespace) -> None:
    from nnunet_unlearning.workflows.erase import ErasurePlan, erase

    done = erase(args.run, dry_run=args.dry_run)
    if isinstance(done, ErasurePlan):
        print(f"would erase cases {' '.join(done.cases)}:")
        print("\n".join([*(f"  remove {p}" for p in done.remove), *(f"  edit   {p}" for p in done.edit)]))
        return
    record = json.loads(done.read_text())
    counts = f"{len(record['removed'])} files removed, {len(record['edited'])} edited"
    print(f"erased cases {' '.join(record['cases'])}: {counts}")
    print(f"record: {done}")


def _demo(args: argparse.Namespace) -> None:
    from nnunet_unlearning.workflows.demo import run_demo

    run_demo(args.workdir, mrbrains18=args.mrbrains18, overwrite=args.overwrite)


def _benchmark(args: argparse.Namespace) -> None:
    from nnunet_unlearning.workflows.benchmark import run_benchmark
    from nnunet_unlearning.workflows.benchmark_runs import RunsPendingError

    try:
        run_benchmark(
            args.mrbrains18,
            args.workdir,
            args.profile,
            forget=args.forget,
            sizes=args.sizes,
            strategies=args.strategies,
            jobs=args.jobs,
            replicates=args.replicates,
            heldout=args.heldout,
            frozen_tuning=args.tuning,
            commands=args.commands,
            collect=args.collect,
            overwrite=args.overwrite,
        )
    except RunsPendingError as pending:
        print(
            f"{pending}: run each line (for example as a SLURM array, docs/benchmarks.md), then run this command "
            "again; it goes on from the finished runs"
        )


def _dataset_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"dataset id must be an integer, got {text!r}") from None
    if not 1 <= value <= 999:
        raise argparse.ArgumentTypeError(f"dataset id must be in 1..999, got {value}")
    return value


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2) like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand's ``handler`` default is the function that runs it."""
    parser = _OneLineErrorParser(
        prog="nnunet-unlearning",
        description="Make a trained nnU-Net v2 model forget chosen subjects, and measure how well it forgot.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int | None], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = command(
        "audit",
        _audit,
        "membership-inference audit of the original, the retrain oracle and unlearned models of one request",
    )
    p.add_argument("run_folders", nargs="+", type=Path, metavar="RUN", help="fold folders of unlearning/retrain runs")
    p.add_argument(
        "--request",
        type=Path,
        default=None,
        help="the request (default: unlearning_request.json in the first run folder)",
    )
    p.add_argument("-o", dest="out", type=Path, default=None, help="output folder (default: the first run folder)")
    p.add_argument("--patches-per-case", type=int, default=64)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch-size", type=int, nargs=3, default=None, help="audit patch (default: half the plans' patch)")
    p.add_argument("--device", default="cpu", help="torch device for inference (cpu, cuda)")

    p = command("report", _report, "compare the runs of one unlearning request: table (Markdown, CSV, JSON), plots")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="fold folders of unlearning and retrain runs")
    p.add_argument(
        "--original",
        type=Path,
        default=None,
        help="the run whose 'start' evaluation is the original model's row (default: the first)",
    )
    p.add_argument(
        "--retrain",
        type=Path,
        default=None,
        help="the retrain oracle's run folder (default: the nnUNetTrainerRetrain* run among RUN)",
    )
    p.add_argument("--groups", type=Path, default=None, help="CSV with columns case,group: adds a per-group table")
    p.add_argument("-o", dest="out", type=Path, required=True, help="output folder")

    p = command("export", _export, "a certified unlearned model as a zip plain nnU-Net installs and serves")
    p.add_argument("run", type=Path, help="the fold_N folder of a finished, certified unlearning run")
    p.add_argument("-o", dest="out", type=Path, required=True, help="the zip to write, e.g. model.zip")
    p.add_argument(
        "--strict",
        action="store_true",
        help="with the plans' intensity statistics fingerprinted without the forgotten cases (refused where a "
        "channel's normalisation reads them, CT, unless the model was trained on strict plans)",
    )

    p = command(
        "strict-plans",
        _strict_plans,
        "write the request's plans with intensity statistics fingerprinted without the forgotten cases, as new "
        "plans in nnUNet_preprocessed for the retrain oracle (-p NAME)",
    )
    p.add_argument("request", type=Path, help="the unlearning request (unlearning_request.json)")
    p.add_argument("-f", dest="fold", default=None, help="the fold, for a request set over several folds")
    p.add_argument(
        "-o", dest="name", default=None, help="name of the new plans (default: <plans>_strict_<request id, 8>)"
    )

    p = command(
        "erase",
        _erase,
        "after the unlearned model is accepted: remove the forgotten cases' data from nnU-Net's folders",
    )
    p.add_argument("run", type=Path, help="the fold_N folder of the accepted (certified) unlearning run")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed and edited, change nothing")

    p = command(
        "verify",
        _verify,
        "recompute the SHA-256 of every file an unlearning certificate names and its verdict "
        "(exit 0: all match, 1: something changed or, with --require-met, the verdict is not met)",
    )
    p.add_argument("certificate", type=Path, help="unlearning_certificate.json (or its run folder)")
    p.add_argument(
        "--require-met", action="store_true", help="exit 1 unless the overall verdict is met (as well as the hashes)"
    )

    p = command(
        "demo",
        _demo,
        "run the whole user path on the CPU profile: convert, train, forget, unlearn, "
        "retrain, evaluate (all under --workdir)",
    )
    p.add_argument("--workdir", type=Path, default=Path("demo_run"), help="folder for everything (default demo_run)")
    p.add_argument(
        "--mrbrains18", type=Path, default=None, help="a real MRBrainS18 release folder (default: a synthetic phantom)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --workdir")

    p = command(
        "benchmark",
        _benchmark,
        "the MRBrainS18 unlearning benchmark on real data: original, retrain "
        "oracle and every strategy at two horizons per forget set, audit, report, tables",
    )
    p.add_argument("mrbrains18", type=Path, help="the MRBrainS18 release folder (training/<id>/...)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("benchmark_run"),
        help="folder for everything (default benchmark_run); an earlier benchmark there is continued",
    )
    p.add_argument(
        "--profile",
        default="cpu",
        choices=["cpu", "paper"],
        help="cpu: 2-core machine, Med3D ResNet-10, coarse; paper: the seed study's setting, GPU",
    )
    p.add_argument(
        "--forget",
        nargs="+",
        default=None,
        help="run one forget set, e.g. --forget 1 or --forget 1 4 (default: the design's sets)",
    )
    p.add_argument(
        "--heldout",
        nargs="+",
        default=None,
        metavar="SUBJECT",
        help="subjects held out of the original's training, scored as never seen (default 070 148); the rest train",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=[1, 2, 3],
        help=(
            "forget-set sizes (default 1 2 3; 1 = each training subject in turn, k > 1 = the first k training "
            "subjects after the tuning subject)"
        ),
    )
    p.add_argument("--strategies", nargs="+", default=None, help="strategy names (default: all)")
    p.add_argument("--jobs", type=int, default=None, help="trainings side by side (default: the profile's)")
    p.add_argument(
        "--replicates",
        type=int,
        default=None,
        help="K: originals, and retrain oracles per forget set, trained independently for the retrain distribution "
        "and the per-subject membership test (default: the profile's, 4; 1: one oracle, no test)",
    )
    p.add_argument(
        "--tuning",
        type=Path,
        default=None,
        metavar="TUNING_JSON",
        help="judge with the settings frozen in an earlier benchmark's tuning.json instead of tuning again "
        "(the tuning subject's oracles and grid are not trained)",
    )
    scheduler = p.add_mutually_exclusive_group()
    scheduler.add_argument(
        "--commands",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the runs needed next as nnUNetv2_train command lines (one per line, with their environment) "
        "to FILE instead of training them, e.g. for a SLURM array; call again when they have run (paper profile)",
    )
    scheduler.add_argument(
        "--collect", action="store_true", help="train nothing: tables from the finished runs, the rest listed missing"
    )
    p.add_argument("--overwrite", action="store_true", help="start afresh instead of continuing")

    command(
        "trainers-dir", _trainers_dir, "print the folder to put in nnUNet_extTrainer, so nnU-Net finds our trainers"
    )

    p = command(
        "convert-mrbrains18",
        _convert_mrbrains18,
        "convert an MRBrainS18 release into $nnUNet_raw/Dataset<ID>_MRBrainS18",
    )
    p.add_argument("src", type=Path, help="release folder holding training/<id>/{pre,orig}")
    p.add_argument("-d", dest="dataset_id", type=_dataset_id, required=True, help="nnU-Net dataset id (1-999)")
    p.add_argument(
        "--modalities",
        nargs="+",
        default=["T1", "IR", "FLAIR"],
        choices=["T1", "IR", "FLAIR"],
        help="channels, in channel order (default: T1 IR FLAIR)",
    )
    p.add_argument(
        "--source", default="pre", choices=["pre", "orig"], help="read bias-corrected pre/ images (default) or orig/"
    )
    p.add_argument(
        "--labels",
        default="challenge",
        help="challenge: 1-8 kept, 9/10 ignored (default); full: 0-10; tissue: MRBrainS13's grey matter (1+2), "
        "white matter (3+4), CSF (5+6), 7-10 ignored; brain: binary mask",
    )
    p.add_argument("--subjects", nargs="+", help="convert only these subject ids (as published, e.g. 070)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")

    p = command("phantom", _phantom, "write a synthetic dataset in the MRBrainS18 release layout")
    p.add_argument("out", type=Path, help="folder to write (it gets training/<id>/...)")
    p.add_argument("--subjects", type=int, default=7, help="number of subjects (default 7)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = command("med3d-check", _med3d_check, "check that a MedicalNet (Med3D) checkpoint will load")
    p.add_argument("weights", type=Path, help="resnet_<depth>.pth or resnet_<depth>_23dataset.pth")
    p.add_argument("--depth", type=int, default=50, choices=[10, 18, 34, 50])
    p.add_argument("--in-channels", type=int, default=1, help="input channels of the dataset (stem is inflated)")

    p = command(
        "plan-med3d",
        _plan_med3d,
        "write nnUNetMed3DPlans: nnU-Net plans with the Med3D ResNet U-Net, same preprocessed data",
    )
    p.add_argument("-d", dest="dataset_id", type=_dataset_id, required=True)
    p.add_argument("-c", dest="configuration", default="3d_fullres")
    p.add_argument("--depth", type=int, default=50, choices=[10, 18, 34, 50])
    p.add_argument("--from", dest="source_plans", default="nnUNetPlans", help="source plans (default nnUNetPlans)")
    p.add_argument("--name", default="nnUNetMed3DPlans", help="name of the new plans (default nnUNetMed3DPlans)")
    p.add_argument("--gpu-memory-gb", type=float, default=8.0, help="GPU memory budget for the batch size")
    p.add_argument(
        "--cpu-bf16",
        choices=["no", "yes", "auto"],
        default="no",
        help="train under bf16 autocast when the device is a CPU: auto = where a probe measures it faster "
        "(default no; the evaluation hook predicts in the same precision, nnUNetv2_predict in fp32)",
    )
    p.add_argument(
        "--mirror",
        choices=["all", "left-right"],
        default="all",
        help="mirroring augmentation of our trainers: along every axis (nnU-Net's, default) or along the images' "
        "left-right axis only (read from the preprocessed cases' orientation; a head is not symmetric front to "
        "back or head to foot)",
    )

    p = command("forget", _forget, "write an unlearning request: which cases to forget from which model")
    p.add_argument("-d", dest="dataset_id", type=_dataset_id, required=True)
    p.add_argument("-c", dest="configuration", required=True, help="configuration, e.g. 3d_fullres")
    p.add_argument(
        "-f",
        dest="folds",
        nargs="+",
        required=True,
        help="fold(s) of the original model; several (e.g. -f 0 1 2 3 4, nnU-Net's ensemble) write a request set, "
        "one request per fold",
    )
    p.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans of the original model")
    p.add_argument("-tr", dest="trainer", default="nnUNetTrainer", help="trainer of the original model")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--cases", nargs="+", help="case ids to forget, e.g. MRBrainS18_070")
    what.add_argument(
        "--subjects",
        nargs="+",
        help="subject (patient) ids to forget with all of their cases, e.g. 070 (resolved through --subject-map "
        "or the converter's subjects.json)",
    )
    p.add_argument(
        "--subject-map",
        type=Path,
        default=None,
        help="CSV with header case,subject mapping every case to its subject (any nnU-Net dataset)",
    )
    p.add_argument(
        "-o",
        dest="out",
        type=Path,
        default=None,
        help="request file (default: $nnUNet_preprocessed/Dataset<ID>_*/unlearning_request.json)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="run config (JSON: seed, schedule, hyperparameters; docs/unlearning.md), checked and "
        "embedded in the request",
    )

    p = command("evaluate", _evaluate, "score predicted segmentations against ground truth")
    p.add_argument("--gt", type=Path, required=True, help="folder of ground-truth label maps (*.nii.gz)")
    p.add_argument("--pred", type=Path, required=True, help="folder of predictions with the same file names")
    p.add_argument("--protocol", default="plain", choices=["plain", "mrbrains18"])
    p.add_argument("--labels", type=int, nargs="+", default=None, help="classes to score (default: all >0)")
    p.add_argument("-o", dest="out", type=Path, default=None, help="metrics JSON (CSV is written beside it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 a finding such as a changed file, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except UserInputError as error:
        print(f"nnunet-unlearning {args.command}: error: {error}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
