"""Med3D: MedicalNet's 3D ResNet encoder + U-Net decoder as an nnU-Net architecture (see docs/med3d.md).

resnet.py (encoder), decoder.py, network.py (Med3DUNet, built by nnU-Net from the plans), checkpoint.py
(MedicalNet weights), memory.py (training-memory estimate), plans.py (plan_med3d), pretrained_trainer.py
(what nnUNetTrainerMed3D adds to nnU-Net's trainer), original_recipe.py (how an original model was trained,
read off its trainer class: what unlearning keeps and the retrain oracle repeats).
"""
