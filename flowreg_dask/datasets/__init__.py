"""Synthetic 2-photon recordings with known ground-truth motion.

The generator builds a realistic-looking two-photon calcium imaging field of view (neuropil
texture, somata with GCaMP-like rings, blood-vessel shadows, neurites, slight vignetting, a
point-spread-function blur), moves it with slow drift, breathing-like rigid jitter and a smooth
non-rigid deformation, adds calcium transients to the functional channels and Poisson-Gaussian
detector noise, and returns the exact backward displacement field of every frame.

Conventions
-----------
* Movies are ``(T, H, W, C)``: time, rows (y), columns (x), channels.
* Flow fields are ``(..., H, W, 2)`` float32 with ``[..., 0] = u`` (horizontal, x) and
  ``[..., 1] = v`` (vertical, y), in pixels.
* The flow is the *backward* flow of the registration: for every frame ``t``::

      registered(y, x) = movie_t(y + v(y, x), x + u(y, x)) == reference(y, x)

  up to noise, calcium activity and interpolation. Content translated by ``+dx`` to the
  right therefore has ``u == +dx``.

How frames are made
-------------------
A smooth *sampling* field ``g_t`` is built per frame (rigid part plus a cubic-spline
non-rigid part on a coarse grid). The clean frame is ``movie_t(p) = scene(p + g_t(p))``, sampled
with :func:`scipy.ndimage.map_coordinates` (cubic spline) from a scene that is larger than the
field of view, so that content really moves in from outside the frame. The backward flow solves
``w(p) + g(p + w(p)) = 0``; it is found by fixed-point iteration ``w <- -g(p + w)`` on the
coarse grid (to 1e-5 px) and interpolated with the same cubic spline. Everything is determined by
``spec`` and the frame index only, so any chunk of frames can be generated independently.

Only numpy and scipy are used here (no code of :mod:`flowreg_dask` besides its error classes), so
the ground truth does not depend on the registration code it is used to test.
"""

from ._save import save_synthetic_recording, spec_from_json
from ._spec import SyntheticRecording, SyntheticSpec, synthetic_pair, synthetic_recording

__all__ = [
    "SyntheticSpec",
    "SyntheticRecording",
    "synthetic_recording",
    "synthetic_pair",
    "save_synthetic_recording",
    "spec_from_json",
]
