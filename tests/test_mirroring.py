"""Mirroring along the planned axes: the left-right axis from nnU-Net's stored geometry, plan-med3d's
``--mirror left-right``, and our trainers mirroring (and letting prediction mirror) along it only."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import blosc2
import numpy as np
import pytest
from nnunet_fixture import DATASET_ID, DATASET_NAME, load_trainer
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from test_med3d_plans import DATASET, write_source

from nnunet_unlearning.cli import main
from nnunet_unlearning.conversion.phantom import write_phantom
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.med3d.plans import plan_med3d
from nnunet_unlearning.nnunet.mirroring import PLANS_KEY, PlannedMirroringMixin, case_left_right_axis, left_right_axis
from nnunet_unlearning.nnunet.trainers_dir import find_trainer
from nnunet_unlearning.unlearning.base_trainer import nnUNetTrainerUnlearn
from nnunet_unlearning.unlearning.retrain_trainer import nnUNetTrainerRetrain
from nnunet_unlearning.workflows.profiles import TESTS


def sitk_properties(direction: np.ndarray) -> dict:
    """Properties as nnU-Net's SimpleITKIO stores them: the direction matrix row-major, columns = index axes."""
    geometry = {"spacing": (1.0, 1.0, 3.0), "origin": (0.0, 0.0, 0.0), "direction": tuple(direction.ravel())}
    return {"sitk_stuff": geometry}


def rotation_z(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "direction, transpose_forward, axis",
    [
        (np.eye(3), [0, 1, 2], 2),  # reader axis x = array axis 2 (nnU-Net's arrays are z, y, x)
        (np.eye(3), [2, 0, 1], 0),  # the planner moved array axis 2 first
        (np.eye(3)[:, [1, 0, 2]], [0, 1, 2], 1),  # rows run left to right: reader axis y
        (rotation_z(20), [0, 1, 2], 2),  # tilted 20° in-plane: still the x axis
        (-np.eye(3), [0, 1, 2], 2),  # the sign does not matter (mirroring is symmetric)
    ],
)
def test_left_right_axis_of_a_case_from_sitk_geometry(direction, transpose_forward, axis):
    assert case_left_right_axis(sitk_properties(direction), transpose_forward, "c") == axis


def test_a_4d_image_reads_its_spatial_block():
    """Channels in one file: SimpleITK's 4 × 4 direction, nnU-Net's array (channel, z, y, x)."""
    direction = np.eye(4)
    direction[:3, :3] = np.eye(3)[:, [1, 0, 2]]
    assert case_left_right_axis({"sitk_stuff": {"direction": tuple(direction.ravel())}}, [0, 1, 2], "c") == 1


def test_left_right_axis_from_nibabel_geometry_prefers_the_reoriented_affine():
    scaled = np.diag([0.96, 0.96, 3.0, 1.0])
    swapped = scaled[:, [1, 0, 2, 3]]  # voxel axis 1 runs left to right
    properties = {"nibabel_stuff": {"original_affine": swapped, "reoriented_affine": scaled}}
    assert case_left_right_axis(properties, [0, 1, 2], "c") == 2
    assert case_left_right_axis({"nibabel_stuff": {"original_affine": swapped}}, [0, 1, 2], "c") == 1


@pytest.mark.parametrize(
    "properties, named",
    [
        ({"spacing": [1, 1, 1]}, "no 3D orientation"),
        ({"sitk_stuff": {"direction": (1.0, 0.0, 0.0, 1.0)}}, "no 3D orientation"),  # a 2D image
        (sitk_properties(rotation_z(40)), "no voxel axis runs left to right .the closest is 40° off"),
    ],
)
def test_a_case_without_a_left_right_axis_is_a_one_line_error(properties, named):
    with pytest.raises(UserInputError, match=named) as error:
        case_left_right_axis(properties, [0, 1, 2], "case_007")
    assert str(error.value).startswith("case_007: ") and "\n" not in str(error.value)


def write_cases(folder: Path, directions: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for case, direction in directions.items():
        (folder / f"{case}.pkl").write_bytes(pickle.dumps(sitk_properties(direction)))


def test_left_right_axis_of_a_dataset_needs_cases_that_agree(tmp_path):
    with pytest.raises(UserInputError, match="no preprocessed cases"):
        left_right_axis(tmp_path, [0, 1, 2])
    write_cases(tmp_path, {"a": np.eye(3), "b": rotation_z(10)})
    assert left_right_axis(tmp_path, [0, 1, 2]) == 2
    write_cases(tmp_path, {"c": np.eye(3)[:, [1, 0, 2]]})
    with pytest.raises(UserInputError, match=r"axis 1 in c, axis 2 in a") as error:
        left_right_axis(tmp_path, [0, 1, 2])
    assert "\n" not in str(error.value)


def test_plan_med3d_writes_the_left_right_axis_only_when_asked(preprocessed, capsys):
    write_source(preprocessed, [40, 224, 192])
    write_cases(preprocessed / DATASET / "nnUNetPlans_3d_fullres", {"s1": np.eye(3), "s2": np.eye(3)})
    plain = json.loads(plan_med3d(777, depth=10).read_text())["configurations"]["3d_fullres"]
    assert PLANS_KEY not in plain
    assert main(["plan-med3d", "-d", "777", "--depth", "10", "--name", "LR", "--mirror", "left-right"]) == 0
    planned = json.loads((preprocessed / DATASET / "LR.json").read_text())["configurations"]["3d_fullres"]
    assert planned[PLANS_KEY] == [2]
    write_cases(preprocessed / DATASET / "nnUNetPlans_3d_fullres", {"s3": np.eye(3)[:, [1, 0, 2]]})
    capsys.readouterr()
    assert main(["plan-med3d", "-d", "777", "--depth", "10", "--name", "LR2", "--mirror", "left-right"]) == 2
    assert "different axes" in capsys.readouterr().err
    assert not (preprocessed / DATASET / "LR2.json").exists()


class _NnunetChoice:
    """Stands in for nnUNetTrainer's method: rotation, dummy 2D flag, initial patch, nnU-Net's mirror axes."""

    inference_allowed_mirroring_axes: tuple[int, ...] | None = None

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
        self.inference_allowed_mirroring_axes = (0, 1, 2)
        return "rotation", False, (20, 60, 60), (0, 1, 2)


class _Trainer(PlannedMirroringMixin, _NnunetChoice):
    def __init__(self, configuration: dict):
        self.configuration_manager = type("C", (), {"configuration": configuration})()


def test_the_mixin_replaces_only_the_mirror_axes_and_only_when_planned():
    planned = _Trainer({PLANS_KEY: [2]})
    assert planned.configure_rotation_dummyDA_mirroring_and_inital_patch_size() == (
        "rotation",
        False,
        (20, 60, 60),
        (2,),
    )
    assert planned.inference_allowed_mirroring_axes == (2,)
    unplanned = _Trainer({})
    assert unplanned.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == (0, 1, 2)
    assert unplanned.inference_allowed_mirroring_axes == (0, 1, 2)


@pytest.mark.parametrize("name", ["nnUNetTrainerMed3D", "nnUNetTrainerMed3D_cpu", "nnUNetTrainerUnlearnFineTune"])
def test_every_trainer_of_ours_mirrors_as_planned(name):
    for cls in (find_trainer(name), nnUNetTrainerRetrain, nnUNetTrainerUnlearn):
        method = cls.configure_rotation_dummyDA_mirroring_and_inital_patch_size
        assert method is PlannedMirroringMixin.configure_rotation_dummyDA_mirroring_and_inital_patch_size
        assert cls.__mro__.index(PlannedMirroringMixin) < cls.__mro__.index(nnUNetTrainer)


def test_the_phantom_runs_left_to_right_along_nnunets_last_axis(tmp_path):
    """The demo plans the phantom with ``--mirror left-right`` when no real data is given."""
    write_phantom(tmp_path / "phantom", n_subjects=1)
    image = next((tmp_path / "phantom" / "training").glob("*/orig/FLAIR.nii.gz"))
    _, properties = SimpleITKIO().read_images([str(image)])
    assert case_left_right_axis(properties, [0, 1, 2], image.parent.parent.name) == 2


def test_the_world_plans_its_left_right_axis_and_a_med3d_trainer_mirrors_along_it(world):
    """On the session's dataset (real MRBrainS18 when present): the planned axis is the one the labels are
    most symmetric along, and a Med3D trainer built from the plans mirrors (and lets prediction mirror) there."""
    name = "nnUNetMed3DPlansLR"
    path = plan_med3d(DATASET_ID, depth=10, name=name, decoder_channels=TESTS.med3d_decoder, mirror="left-right")
    configuration = json.loads(path.read_text())["configurations"]["3d_fullres"]
    (axis,) = configuration[PLANS_KEY]
    if world.is_real:
        segmentation = next((world.preprocessed / DATASET_NAME / configuration["data_identifier"]).glob("*_seg.b2nd"))
        labels = np.asarray(blosc2.open(str(segmentation))[:])[0]
        inside = labels > 0
        overlap = [((labels == np.flip(labels, a)) & inside).sum() / inside.sum() for a in range(3)]
        assert int(np.argmax(overlap)) == axis, overlap
    trainer = load_trainer(find_trainer("nnUNetTrainerMed3D_scratch"), world, plans=name)
    assert trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == (axis,)
    assert trainer.inference_allowed_mirroring_axes == (axis,)
