"""NVIDIA speechlm2 SALM models (Canary-Qwen-2.5B): load, transcribe, export; their training
backend is engine.train.nemo, behind the same run folder.

NeMo is an optional extra (``pip install -e '.[nemo]'``). Nothing here imports NeMo at module
level, so the workbench works without it and says how to install it when a NeMo model is
chosen. NeMo is driven through its Python API (SALM + DataModule + Lightning Trainer) from our
own job process; its example script ``salm_train.py`` is not used because it pins a CUDA device
at import time.
"""
