"""The shapes of the JSON files we write, as TypedDicts: ``unlearning_metrics.json`` (:class:`MetricsRecord`),
``unlearning_audit.json`` (:class:`AuditRecord`), ``unlearning_certificate.json`` (:class:`CertificateRecord`),
the request copy ``unlearning_request.json`` (:class:`RequestRecord`) and the report's ``report.json``
(:class:`ReportRecord`), with the records nested in them.

A TypedDict is a plain dict at run time: the files hold exactly what the writers build, and mypy checks writers
and readers against one description. Each record names the code that writes it.

Conventions: Dice, MAE, volume similarity and ratios are fractions (Dice in [0, 1]); a name ending in ``_pct``
is a percentage, ``_ml`` millilitres, ``_mm`` millimetres; ``seconds`` are wall-clock seconds. None (JSON
null) is a value that is undefined (a NaN, a division by zero) or was not computed. Set names are "forget",
"retain" and "heldout". SHA-256 digests are lowercase hex; times are ISO 8601 in UTC.

A key a writer's builder leaves out and its caller adds before writing is ``NotRequired``; its comment names
the caller.
"""

# No ``from __future__ import annotations``: Python 3.11 reads NotRequired off the evaluated annotations only, so
# a postponed one would count as required in ``__required_keys__``.
from typing import Any, NotRequired, TypedDict

#: A label value as a key: an int in the records the code builds, a string once read back from JSON (whose
#: object keys are strings).
LabelKey = int | str

#: One row of the comparison table (``evidence/comparison.py``: column key → value), as report.json and the
#: certificate's evidence hold it.
TableRow = dict[str, object]


# --- unlearning_metrics.json: an evaluation ---------------------------------------------------------------------


class MetricMeans(TypedDict):
    """The segmentation metrics of one class, or their mean over classes or cases (docs/metrics.md); None where
    undefined (a class absent from truth and prediction) or not computed (soft MAE without probabilities, HD95
    not asked for)."""

    dice: float | None
    #: mean |1[pred = c] − 1[gt = c]| over the scored voxels
    hard_mae: float | None
    #: mean |p_c − 1[gt = c]| over the scored voxels, p_c the softmax probability of the class
    soft_mae: float | None
    #: 1 − |V_gt − V_pred| / (V_gt + V_pred)
    volume_similarity: float | None
    #: 95th-percentile Hausdorff distance
    hd95_mm: float | None


class ClassMetricsRecord(MetricMeans):
    """One class in one case (``evaluation/metrics.py``, ``ClassMetrics``): its metrics, voxel counts and
    volumes."""

    #: scored voxels of the class in the ground truth, and in the prediction
    n_gt: int
    n_pred: int
    #: those counts times the voxel volume; None without a voxel spacing
    volume_gt_ml: float | None
    volume_pred_ml: float | None


class MembershipScores(TypedDict):
    """A model's membership scores on one case (``evaluation/subject_scores.py``): means over the case's
    ``n_valid_voxels`` scored voxels of the logit-scaled confidence of the true label and of the loss (nats),
    and the same over its ``n_foreground_voxels`` scored voxels of a label > 0 (records written before the
    foreground scores existed lack them)."""

    logit_confidence: float
    loss: float
    foreground_logit_confidence: NotRequired[float]
    foreground_loss: NotRequired[float]
    n_foreground_voxels: NotRequired[int]


class CaseRecord(TypedDict):
    """One case's metrics (``evaluation/metrics.py``, ``CaseMetrics.to_dict``)."""

    #: voxels scored: those inside nnU-Net's crop whose ground truth is not the ignore label
    n_valid_voxels: int
    #: each metric's mean over the scored classes, undefined classes left out
    mean: MetricMeans
    #: label value (a string) → the class's metrics
    classes: dict[str, ClassMetricsRecord]
    #: the evaluation hook adds them (``Evaluation.to_json``); ``CaseMetrics.to_dict`` leaves them out
    membership: NotRequired[MembershipScores]


class SetScores(TypedDict):
    """A set's size and its mean Dice and MAE: each the mean over its cases of the case's mean over the scored
    classes, None where undefined."""

    n_cases: int
    dice: float | None
    hard_mae: float | None
    soft_mae: float | None


class SetSummary(SetScores, MetricMeans):
    """One set of an evaluation (``evaluation/summary.py``, ``aggregate``): the mean of every metric over its
    cases (None when a case lacks it), and the same per class."""

    #: label value → the class's metrics averaged over the set's cases (undefined values left out)
    per_class: dict[LabelKey, MetricMeans]


class RiskCounts(TypedDict):
    """Critical tissue (white-matter lesions, infarction) pooled over a set's cases (``evaluation/clinical_risk.py``,
    docs/metrics.md); the ratios are None when the set holds no critical ground-truth voxel."""

    #: (fn_weight · FN + fp_weight · FP) / (TP + FN): 0 is perfect, fn_weight marks nothing at all
    risk: float | None
    #: FN / (TP + FN)
    false_negative_rate: float | None
    #: the missed critical volume summed over the cases; None when a case with missed voxels has no voxel volume
    under_segmented_ml: float | None
    #: under_segmented_ml over the set's number of cases
    under_segmented_ml_per_case: float | None
    #: voxel counts: ground truth (TP + FN), true positives, false negatives, false positives
    gt_voxels: int
    tp_voxels: int
    fn_voxels: int
    fp_voxels: int
    #: cases with critical ground truth, and those of them of which not one critical voxel was found
    cases_with_critical: int
    cases_missed: int


class RiskSet(RiskCounts):
    """One set's clinical risk: pooled over every critical class, and per class."""

    n_cases: int
    #: critical label value → the class's counts
    per_class: dict[LabelKey, RiskCounts]


class RiskWeights(TypedDict):
    """The cost of one missed (``fn``) and of one falsely marked (``fp``) critical voxel."""

    fn: float
    fp: float


class ClinicalRiskRecord(TypedDict):
    """The clinical risk of one evaluation (``evaluation/clinical_risk.py``, ``clinical_risk``)."""

    #: the critical label values, ascending; may be empty
    critical_classes: list[int]
    weights: RiskWeights
    #: set name → its risk
    sets: dict[str, RiskSet]


class RiskChange(TypedDict):
    """End minus start of one set's risk, false-negative rate and under-segmented volume; None where either side
    is None; positive: the model got riskier."""

    risk: float | None
    false_negative_rate: float | None
    under_segmented_ml: float | None


class EvaluationRecord(TypedDict):
    """One evaluation of a run's model by the evaluation hook (``evaluation/hook.py``, ``Evaluation``)."""

    #: "start" (the original model, before the first step), "epoch_<N>" or "end" (the certified model)
    tag: str
    #: the epoch of the state evaluated
    epoch: int
    #: the evaluation's own wall time
    seconds: float
    #: "fp32" or "bf16" (CPU autocast), the precision of its predictions; records written before it existed
    #: were fp32
    precision: NotRequired[str]
    #: set name → its summary
    sets: dict[str, SetSummary]
    clinical_risk: ClinicalRiskRecord
    #: case id → its metrics
    cases: dict[str, CaseRecord]
    #: the cases whose scores a start evaluation reused from an earlier run on the same checkpoint
    #: (``evaluation/kept_scores.py``); absent when it predicted every case
    reused_cases: NotRequired[list[str]]


# --- unlearning_metrics.json: the run --------------------------------------------------------------------------


class Gaps(TypedDict):
    """Retain versus forget in one evaluation (``evaluation/summary.py``, ``gaps``); positive where the forget set
    scores worse."""

    #: Dice_retain − Dice_forget
    dice_gap: float | None
    #: MAE_forget − MAE_retain
    hard_mae_gap: float | None
    soft_mae_gap: float | None


class FiguresRecord(TypedDict):
    """The seed study's figures of a run, from its start and end evaluations (``evaluation/summary.py``,
    ``unlearning_figures``)."""

    #: 100 · (1 − Dice_end / Dice_start) on the forget set
    forget_drop_pct: float | None
    #: 100 · Dice_end / Dice_start on the retain set
    retain_retention_pct: float | None
    before: Gaps
    after: Gaps
    #: set name → its change from start to end; added by the run record (``RunRecord.content``)
    clinical_risk_change: NotRequired[dict[str, RiskChange]]


class CheckRecord(TypedDict):
    """One check of a calibrated run (``evaluation/calibration.py``, ``Check``): the forgetting test and the
    utility of the state checked."""

    tag: str
    epoch: int
    #: optimizer steps taken up to the state checked
    steps: int
    #: the forget and the held-out subjects' mean score (the acceptance criteria's: Dice, hard or soft MAE)
    forget_mean: float
    heldout_mean: float
    #: sample standard deviation of the held-out subjects' scores (0 with one subject)
    heldout_sd: float
    #: the band's half width: z · heldout_sd + tolerance · |heldout_mean|, or memorisation_tolerance ·
    #: memorisation under the memorisation reference
    half_width: float
    #: forget mean against the band's centre, positive when the model scores the forget subjects better
    gap: float
    #: the band's centre: the held-out mean, or the forget subjects' check-0 score less the memorisation
    target: float
    #: the original's retain-over-held-out advantage (≥ 0) under the memorisation reference, else None
    memorisation: float | None
    #: "remembered", "forgotten" or "over_forgotten"
    state: str
    #: how far the forget mean lies outside the band (0 inside it)
    distance: float
    #: retain and held-out mean Dice over the original's
    retain_ratio: float
    heldout_ratio: float
    #: both ratios at or above the utility budget
    within_budget: bool


class DecisionRecord(TypedDict):
    """Why a calibrated run stopped and which check's state it certifies."""

    #: "forgotten", "utility_budget", "over_forgotten", "stalled" or "schedule_end" (recorded only on a stop)
    reason: str | None
    #: whether it stopped because the forget subjects reached the band
    target_reached: bool
    stopped_at_epoch: int
    kept_epoch: int
    kept_tag: str
    #: steps taken up to the kept state, and in all
    steps_used: int
    steps_taken: int
    #: whether the kept state is an earlier one than the last checked
    rolled_back: bool


class CalibrationRecord(TypedDict):
    """A calibrated run's checks and decision (``evaluation/calibration.py``, ``Calibration.to_json``)."""

    #: the fields of ``AcceptanceCriteria`` and of ``CalibrationSettings``, by name
    criteria: dict[str, object]
    settings: dict[str, object]
    checks: list[CheckRecord]
    #: None until the run stops (an interrupted run)
    decision: DecisionRecord | None


class ScheduleRecord(TypedDict):
    """The schedule a run trained with (``nnunet/glue.py``, ``schedule_of``)."""

    epochs: int
    iterations_per_epoch: int


class RunningStatisticsRecord(TypedDict):
    """What a run did to the running statistics of normalisation layers (``unlearning/base_trainer.py``,
    ``_recalibrated``)."""

    policy: str
    #: layers whose parameters changed (recalibrated on retain batches), and layers that keep the original's
    recalibrated_layers: int
    kept_layers: int
    #: retain batches the recalibration used, and its wall time
    batches: int
    seconds: float


class SecondsRecord(TypedDict):
    """A run's wall times: in all (a resumed run's parts summed), preparing the strategy (teachers, masks),
    training steps, and evaluations."""

    wall: float
    prepare: float
    train: float
    evaluation: float


class MetricsRecord(TypedDict):
    """``unlearning_metrics.json`` (``unlearning/run_record.py``, ``RunRecord.content``): one run of one request,
    rewritten after every evaluation."""

    request_id: str
    #: the nnU-Net trainer class
    trainer: str
    #: the strategy's name; None for the retrain oracle
    strategy: str | None
    #: the strategy's section as the run used it
    hyperparameters: dict[str, object]
    #: the run config as the run used it (``unlearning/run_config.py``, ``RunSettings.to_json``); None for the
    #: retrain oracle
    settings: dict[str, object] | None
    #: the request's case ids
    forget: list[str]
    retain: list[str]
    heldout: list[str]
    #: None until training starts
    schedule: ScheduleRecord | None
    #: epochs at which ``--c`` continued the interrupted run
    resumed_at_epochs: list[int]
    #: None until the run ends
    running_statistics: RunningStatisticsRecord | None
    #: optimizer steps taken when the run ended (None before), and the strategy's resumable state then
    steps_taken: int | None
    strategy_state: dict[str, object]
    #: None for a run that is not calibrated
    calibration: CalibrationRecord | None
    original_checkpoint_sha256: str
    #: None until the run has finished
    unlearned_checkpoint_sha256: str | None
    seconds: SecondsRecord
    #: None until the run has a "start" and an "end" evaluation
    figures: FiguresRecord | None
    evaluations: list[EvaluationRecord]


# --- unlearning_request.json -----------------------------------------------------------------------------------


class OriginalModelRecord(TypedDict):
    """The model a request forgets from (``request.py``, ``OriginalModel``); paths absolute."""

    trainer: str
    plans: str
    configuration: str
    fold: str
    results_folder: str
    checkpoint: str
    checkpoint_sha256: str
    #: how it was trained (``med3d/original_recipe.py``); None for a model trained before recipes were recorded
    recipe: dict[str, Any] | None


class RequestRecord(TypedDict):
    """An unlearning request and the copy every run keeps (``request.py``, ``UnlearningRequest.to_json``)."""

    format: int
    request_id: str
    dataset_id: int
    dataset_name: str
    original: OriginalModelRecord
    #: case ids, sorted
    forget: list[str]
    retain: list[str]
    heldout: list[str]
    #: case id → its entry in the converter's subjects.json (its source files under "files", each path + sha256)
    source_files: dict[str, Any]
    created: str
    #: the run config given to ``forget --config``, or None
    run_config: dict[str, Any] | None
    #: cases that earlier requests of the model's lineage forgot
    forgotten_before: list[str]
    #: the request whose unlearned model this one starts from: request_id, run_folder, certificate and
    #: certificate_sha256; None from a trained original
    previous: dict[str, str] | None
    #: a request by subject: {"source": ..., "cases": {subject: case ids}}; None for a request by case
    subjects: dict[str, Any] | None
    #: the fold's model never trained on the forget cases (a request set's fold); absent in older requests
    untouched: NotRequired[bool]
    #: the request set's id for a fold of a set (names chained runs' folders), else None; absent in older requests
    set_id: NotRequired[str | None]


# --- unlearning_audit.json -------------------------------------------------------------------------------------


class Estimate(TypedDict):
    """An estimate and its percentile-bootstrap interval [low, high]; None without bootstrap draws."""

    value: float
    ci95: list[float] | None


class MembershipAttack(TypedDict):
    """The membership-inference attack on one model (``evaluation/audit_attack.py``, docs/audit.md)."""

    #: share of forget patches the attack judges non-members
    mia_efficacy: Estimate
    #: AUC of the member score, forget (positive) vs out-of-fold held-out patches; 1/2: forget looks unseen
    auc_forget_vs_heldout: Estimate
    #: out-of-fold AUC of retain (positive) vs held-out patches: the attack's strength on this model
    attack_auc: Estimate
    #: share of held-out patches judged non-members out of fold
    heldout_nonmember_rate: Estimate


class AuditGap(TypedDict):
    """A model's estimates minus the retrain oracle's (0 for a perfect unlearner)."""

    mia_efficacy: float
    auc_forget_vs_heldout: float


class AuditModelRecord(MembershipAttack):
    """One audited model (``evaluation/audit.py``, ``audit_models``)."""

    #: the fold folder, and the trainer, plans, configuration and fold its name gives
    folder: str
    trainer: str
    plans: str
    configuration: str
    fold: str
    #: of its checkpoint_final.pth when audited
    checkpoint_sha256: str
    #: set name → patches audited
    n_patches: dict[str, int]
    #: set name → patch feature → its mean over the set's patches
    feature_means: dict[str, dict[str, float]]
    #: the model's audit time
    seconds: float
    #: "fp32" or "bf16" (CPU autocast), the precision of its predictions, chosen as the evaluation hook chooses
    #: (``med3d/cpu_precision.py``); audits written before it existed were fp32
    precision: NotRequired[str]
    #: None without a "retrain" model; added by ``audit_models`` once every model is measured
    gap_to_retrain: NotRequired[AuditGap | None]


class AuditSettings(TypedDict):
    """How an audit sampled and judged patches."""

    #: spatial size in voxels (x, y, z)
    patch_size: list[int]
    patches_per_case: int
    #: bootstrap draws for the intervals (0: none)
    bootstrap: int
    seed: int
    #: the intervals' two-sided coverage
    ci_level: float
    #: the per-patch features, in column order
    features: list[str]
    classifier: str
    #: the torch device the models predicted on
    device: str


class AuditRecord(TypedDict):
    """``unlearning_audit.json`` (``evaluation/audit.py``, ``audit_models``; written by ``run_audit``)."""

    format: int
    request_id: str
    dataset: str
    #: the request's case ids, sorted
    forget: list[str]
    retain: list[str]
    heldout: list[str]
    settings: AuditSettings
    #: label ("original", "retrain", a trainer name) → the model's audit
    models: dict[str, AuditModelRecord]
    #: the label of this folder's own model (None in an output folder holding none); added by ``run_audit``
    model: NotRequired[str | None]


# --- unlearning_certificate.json -------------------------------------------------------------------------------


class FileEntry(TypedDict):
    """A certified file: its path (relative to the certificate's folder for a file in it) and SHA-256."""

    path: str
    sha256: str


class DatasetRef(TypedDict):
    """An nnU-Net dataset: its id and name (``Dataset<ID>_<name>``)."""

    id: int
    name: str


class ForgottenRecord(TypedDict):
    """What a certificate says was forgotten."""

    cases: list[str]
    #: when the request was written
    requested: str
    #: the converted release's folder (subjects.json's ``source_root``); None when subjects.json was not found
    source_root: str | None
    #: the request's source files (`RequestRecord`), paths relative to source_root
    source_files: dict[str, Any]
    subjects: dict[str, Any] | None
    forgotten_before: list[str]
    #: the fold's model never trained on the cases (a request set's fold); certified unchanged.
    #: Absent from certificates written before request sets.
    untouched: NotRequired[bool]


class CertifiedModel(TypedDict):
    """The model a certificate certifies."""

    trainer: str
    #: from the folder name; None when it is not ``<Trainer>__<Plans>__<Configuration>``
    plans: str | None
    configuration: str | None
    #: the fold folder's name, e.g. "fold_0"
    fold: str
    strategy: str | None
    hyperparameters: dict[str, object]
    settings: dict[str, object] | None
    schedule: ScheduleRecord | None
    #: when its checkpoint was written
    finished: str
    #: every ``*.pth`` in the folder
    models_in_folder: list[str]


class OriginalRef(TypedDict):
    """The model a certified model was unlearned from."""

    trainer: str
    plans: str
    configuration: str
    fold: str
    recipe: dict[str, Any] | None


class EvidenceRecord(TypedDict):
    """The evidence a certificate quotes."""

    #: the comparison table: the original, the retrain oracle when found, and this model
    rows: list[TableRow]
    retrain_run: str | None
    retrain_checkpoint_sha256: str | None
    #: the settings of the audit quoted; None when this model has no audit
    audit_settings: AuditSettings | None


class CriterionRecord(TypedDict):
    """One acceptance criterion's verdict (``evidence/verdict.py``)."""

    #: "met", "not met" or "not measured"
    verdict: str
    #: whether the overall verdict depends on it
    required: bool
    #: the numbers the text states, by name
    numbers: dict[str, object]
    text: str


class VerdictRecord(TypedDict):
    """A certificate's verdict (``evidence/verdict.py``, ``verdict``)."""

    #: "met", "not met" or "not measured"
    overall: str
    text: str
    #: criterion name → its verdict
    criteria: dict[str, CriterionRecord]
    #: the fields of ``AcceptanceCriteria`` and their ``source`` (the run's settings, or the defaults)
    acceptance: dict[str, object]
    #: a calibrated run's stop in one sentence; None for other runs
    calibration: str | None


class StatementRecord(TypedDict):
    """What a certificate shows and what it does not, in sentences."""

    shows: list[str]
    does_not_show: list[str]


class CertificateRecord(TypedDict):
    """``unlearning_certificate.json`` (``evidence/certificate.py``, ``certificate_content``)."""

    #: "nnunet-unlearning unlearning certificate"
    kind: str
    format: int
    issued: str
    request_id: str
    dataset: DatasetRef
    forgotten: ForgottenRecord
    #: the request's ``previous`` (`RequestRecord`)
    previous: dict[str, str] | None
    model: CertifiedModel
    original: OriginalRef
    #: name ("unlearned_checkpoint", "request", "metrics", "original_checkpoint", "audit", ...) → the file
    files: dict[str, FileEntry]
    #: package → its version in the process that wrote the certificate (None: not installed)
    software: dict[str, str | None]
    seconds: SecondsRecord
    evidence: EvidenceRecord
    #: absent from format-1 certificates, which still verify
    verdict: NotRequired[VerdictRecord]
    statement: StatementRecord


# --- report.json -----------------------------------------------------------------------------------------------


class GroupTable(TypedDict):
    """The comparison per subgroup of cases: the groups file and its rows (``evidence/subgroups.py``)."""

    file: str
    rows: list[TableRow]


class CalibrationReport(CalibrationRecord):
    """A calibrated run's record with its stop in one sentence (None: undecided)."""

    text: str | None


class ReportRecord(TypedDict):
    """``report.json`` (``evidence/report.py``, ``report_content``)."""

    format: int
    request_id: str
    #: None when the request copy was not found
    dataset: str | None
    #: set name → case ids
    case_sets: dict[str, list[str]]
    #: the run folder whose "start" evaluation is the original model's row, and the retrain oracle's
    original_from: str | None
    retrain: str | None
    columns: list[str]
    rows: list[TableRow]
    groups: GroupTable | None
    #: run folder → its calibration, for the calibrated runs
    calibration: dict[str, CalibrationReport]
    #: the plots' file names; added by ``write_report``
    plots: NotRequired[list[str]]


class StrictChannelRecord(TypedDict):
    """One input channel of a strict fingerprint (``workflows/strict_fingerprint.py``): the configuration's
    normalisation scheme, whether it reads the plans' intensity statistics, and whether the strict ones change
    the channel's preprocessed data."""

    name: str
    normalization: str
    reads_statistics: bool
    input_changes: bool


class StrictFingerprintRecord(TypedDict):
    """What strict plans (under ``unlearning_strict_fingerprint``) and a strict export's manifest state
    (``workflows/strict_fingerprint.py``, ``StrictFingerprint.record``): the request whose lineage was left out,
    the configuration, how many cases were fingerprinted and how many forgotten ones left out, and per channel
    (key as in the plans, "0", "1", ...) :class:`StrictChannelRecord`. It holds no statistic and no change of one:
    with the strict values those give back the original ones."""

    request_id: str
    configuration: str
    cases: int
    forgotten: int
    input_changes: bool
    channels: dict[str, StrictChannelRecord]
