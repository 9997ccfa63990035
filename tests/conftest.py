import os

# The suite runs plugins strict: a plugin that fails to load is a test failure, not a warning.
os.environ.setdefault("PXP_STRICT_PLUGINS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
