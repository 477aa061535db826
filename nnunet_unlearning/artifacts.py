"""Names of the files nnU-Net and our trainers write into a run folder (``nnUNet_results/.../fold_N``)."""

#: The model nnU-Net writes when training ends: for an unlearning run, the certified model.
FINAL_CHECKPOINT = "checkpoint_final.pth"
#: nnU-Net's resumable checkpoint (``--c``), removed by nnU-Net when training ends.
LATEST_CHECKPOINT = "checkpoint_latest.pth"
#: nnU-Net's best-pseudo-Dice checkpoint, which an unlearning run never writes (a partly unlearned model).
BEST_CHECKPOINT = "checkpoint_best.pth"
#: What an unlearning run needs besides the latest checkpoint to resume exactly; removed with it.
RESUME_STATE_FILE = "unlearning_resume_state.pt"
#: Written by the Med3D trainer beside its model: the MedicalNet checkpoint its encoder started from, and its SHA-256.
MED3D_INITIALISATION_FILE = "med3d_initialisation.json"
