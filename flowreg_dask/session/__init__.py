"""Multi-session alignment: several recordings of one field of view in one frame.

Three stages (the workflow of pyflowreg's session module, on dask):

1. :func:`run_stage1` corrects every recording matching ``pattern`` under ``root`` into its own
   resumable store and writes its temporal average;
2. :func:`run_stage2` estimates the displacement of each recording's average to the centre
   recording's (rigid pre-alignment + variational flow), saved as ``w_to_reference.npz``;
3. :func:`run_stage3` warps every corrected recording to the centre out of core
   (``final_results/aligned_<name>.zarr``) and combines the valid masks
   (``final_results/final_valid_idx.*``).

:func:`run_session` runs them in order on one scheduler (local threads/processes, a
``distributed`` cluster, or SLURM/PBS/SGE/LSF through dask-jobqueue), and every stage resumes what
an earlier run finished. CLI: ``flowreg-dask session run --config session.toml [--stage N]``.
"""

from ._files import Recording, array_task_index, center_index, discover
from .cluster import make_jobqueue_cluster, registration_config, session_client
from .config import SessionConfig
from .run import run_session
from .stage1 import run_stage1, stage1_options, temporal_average
from .stage2 import SessionAlignment, align_average, run_stage2
from .stage3 import align_mask, run_stage3, sequence_mask

__all__ = [
    "SessionConfig",
    "SessionAlignment",
    "Recording",
    "run_session",
    "run_stage1",
    "run_stage2",
    "run_stage3",
    "stage1_options",
    "temporal_average",
    "align_average",
    "sequence_mask",
    "align_mask",
    "discover",
    "center_index",
    "array_task_index",
    "make_jobqueue_cluster",
    "session_client",
    "registration_config",
]
