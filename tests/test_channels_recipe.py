"""The structural-channel recipe of the README: align on one channel, apply to the other.

A two-channel synthetic recording whose second channel is replaced by a static image plus noise
(a channel that says "no motion", the worst case for equal weights). With ``weight=[1, 0]`` only
the structural channel drives the flow, so the flow is as accurate as registering the structural
channel alone, and the functional channel is warped with it. The same holds for separate
recordings through ``apply_flow``.
"""

from __future__ import annotations

import numpy as np

import flowreg_dask as fr
from flowreg_dask.cli.main import main
from flowreg_dask.datasets import synthetic_recording

SEQ = fr.RegistrationConfig(parallelization="sequential", progress=False)
B = 8  # border excluded from the endpoint error


def _epe(flow, truth) -> float:
    d = flow[:, B:-B, B:-B] - truth[:, B:-B, B:-B]
    return float(np.linalg.norm(d, axis=-1).mean())


def _recording():
    rec = synthetic_recording(n_frames=30, height=48, width=52, n_channels=2, seed=8)
    movie = rec.movie.copy()
    rng = np.random.default_rng(0)
    static = rec.reference[..., 1][None] + rng.normal(0, 50, movie.shape[:3])
    movie[..., 1] = np.clip(static, 0, 65535).astype(movie.dtype)
    return rec, movie


def test_weight_selects_the_structural_channel(tmp_path):
    rec, movie = _recording()
    opts = fr.OFOptions(quality_setting="balanced", buffer_size=30, reference_frames=rec.reference)
    _, both = fr.compensate_arr(movie, rec.reference, opts)  # equal weights: pulled to zero
    reg, structural = fr.compensate_arr(movie, rec.reference, opts.copy(weight=[1, 0]))
    _, alone = fr.compensate_arr(movie[..., :1], rec.reference[..., :1], opts.copy(weight=[1]))
    # measured: 2.06 px with equal weights, 0.262 px with [1, 0] and for channel 0 alone
    assert _epe(structural, rec.flow) < 0.4 < 0.25 * _epe(both, rec.flow)
    assert abs(_epe(structural, rec.flow) - _epe(alone, rec.flow)) < 0.02
    # the functional channel is warped with the structural channel's flow
    expected = fr.warp(movie[..., 1:2], structural, fill=rec.reference[..., 1:2])
    assert np.array_equal(reg[..., 1:2], expected)
    # the same from the command line, the weight in an options file
    np.save(tmp_path / "two.npy", movie)
    (tmp_path / "structural.toml").write_text(
        'weight = [1.0, 0.0]\nquality_setting = "balanced"\nreference_frames = [0, 1, 2, 3]\n'
    )
    out = tmp_path / "corrected.zarr"
    argv = [
        "correct",
        str(tmp_path / "two.npy"),
        "-o",
        str(out),
        "--options",
        str(tmp_path / "structural.toml"),
        "--no-progress",
        "--save-w",
    ]
    assert main(argv) == 0
    stored = fr.open_result(out)
    assert stored.attrs["metadata"]["options"]["weight"] == [1.0, 0.0]
    _, same = fr.compensate_arr(
        movie,
        None,
        fr.OFOptions(weight=[1, 0], quality_setting="balanced", reference_frames=[0, 1, 2, 3]),
    )
    np.testing.assert_array_equal(stored["flow"].values, same)


def test_separate_recordings_through_stored_flows(tmp_path):
    rec, movie = _recording()
    np.save(tmp_path / "red.npy", movie[..., :1])
    np.save(tmp_path / "green.npy", movie[..., 1:])
    opts = fr.OFOptions(quality_setting="balanced", save_w=True, reference_frames=[0, 1, 2, 3])
    red = fr.compensate_recording(
        opts, SEQ, recording=tmp_path / "red.npy", output=tmp_path / "red.zarr"
    )
    green = fr.apply_flow(red, tmp_path / "green.npy", output=tmp_path / "green.zarr", fill="zeros")
    flow = fr.open_result(red)["flow"].values
    corrected = fr.open_result(green)["corrected"].values
    expected = fr.warp(movie[..., 1:], flow, fill=np.zeros(movie.shape[1:3] + (1,), np.float32))
    assert np.array_equal(corrected, expected)
