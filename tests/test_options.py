"""Tests of :mod:`flowreg_dask.options` (OFOptions, presets, serialisation, RegistrationConfig)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from flowreg_dask.errors import InvalidOptionError, RecordingNotFoundError
from flowreg_dask.options import (
    QUALITY_PRESETS,
    OFOptions,
    OutputFormat,
    RegistrationConfig,
    channel_weights,
    load_preset,
    options_table,
)

FLOW_KWARGS = {
    "alpha",
    "weight",
    "levels",
    "min_level",
    "eta",
    "iterations",
    "update_lag",
    "a_data",
    "a_smooth",
    "gnc_schedule",
    "warping_steps",
    "const_assumption",
}


def _all_changed(tmp_path: Path) -> OFOptions:
    """Options with every field different from its default."""
    return OFOptions(
        alpha=(2.0, 3.5),
        weight=[1.0, 2.0, 1.0],
        levels=20,
        min_level=3,
        eta=0.75,
        update_lag=7,
        iterations=33,
        a_smooth=0.5,
        a_data=(0.4, 0.6, 1.0),
        gnc_schedule=(0.0, 0.25, 1.0),
        warping_steps=4,
        constancy_assumption="census",
        sigma=[[1.5, 2.0, 0.0], [0.5, 0.25, 1.0], [3.0, 3.0, 0.1]],
        channel_normalization="separate",
        interpolation_method="linear",
        nonfinite="reference",
        cc_initialization=True,
        cc_hw=(64, 128),
        cc_up=4,
        update_initialization_w=False,
        update_reference=True,
        reference_frames=[3, 1, 4, 1, 5],
        bin_size=2,
        buffer_size=64,
        flow_backend="cupy",
        backend_params={"device": 1, "block": [16, 16], "name": "x"},
        save_w=True,
        save_valid_idx=True,
        save_meta_info=False,
        output_typename="uint16",
        output_format="HDF5",
        input_file=tmp_path / "in.tif",
        output_path=tmp_path / "out dir",
        output_file_name="reg.h5",
        naming_convention="batch",
        verbose=True,
        channel_idx=[2, 0],
        save_valid_mask=True,
        min_frames_per_reference=10,
    )


# ---- defaults ------------------------------------------------------------------------------------


def test_defaults_match_spec_appendix_a() -> None:
    o = OFOptions()
    assert o.alpha == (1.5, 1.5)
    assert o.levels == 100
    assert o.min_level == -1 and o.quality_setting == "quality" and o.effective_min_level == 0
    assert o.eta == 0.8
    assert o.iterations == 50
    assert o.update_lag == 5
    assert o.a_data == 0.45
    assert o.a_smooth == 1.0
    assert o.sigma == [[1.0, 1.0, 0.1], [1.0, 1.0, 0.1]]
    assert o.weight == [0.5, 0.5]
    assert o.buffer_size == 400
    assert o.reference_frames == list(range(50, 500))
    assert len(o.reference_frames) == 450
    assert o.constancy_assumption == "gc"
    assert o.interpolation_method == "cubic"
    assert o.channel_normalization == "joint"
    assert o.output_format == "ZARR" and o.output_format is OutputFormat.ZARR
    assert o.flow_backend == "numba"
    assert o.cc_hw == 256 and o.cc_up == 1 and o.cc_initialization is False
    assert o.update_initialization_w is True and o.update_reference is False
    assert o.save_meta_info is True and o.save_w is False and o.save_valid_idx is False
    assert o.output_path == Path("results")
    assert o.output_typename is None and o.gnc_schedule is None and o.warping_steps is None
    assert repr(o) == "OFOptions()"


def test_defaults_are_not_shared() -> None:
    a, b = OFOptions(), OFOptions()
    a.reference_frames.append(7)
    a.sigma[0][0] = 9.0
    assert b.reference_frames == list(range(50, 500))
    assert b.sigma[0][0] == 1.0


# ---- alpha and assignment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, (3.0, 3.0)),
        (2.5, (2.5, 2.5)),
        ([4], (4.0, 4.0)),
        ((1, 2), (1.0, 2.0)),
        (np.array([0.5, 1.5]), (0.5, 1.5)),
        (np.float32(2.0), (2.0, 2.0)),
    ],
)
def test_alpha_normalised_to_tuple(value: object, expected: tuple[float, float]) -> None:
    assert OFOptions(alpha=value).alpha == expected


@pytest.mark.parametrize("bad", [-1, 0, (1, -2), (1, 2, 3), [], "big", float("nan"), True])
def test_alpha_invalid(bad: object) -> None:
    with pytest.raises(InvalidOptionError, match="alpha") as info:
        OFOptions(alpha=bad)
    assert "Fix:" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_assignment_is_validated_and_atomic() -> None:
    o = OFOptions()
    o.alpha = 3.0
    assert o.alpha == (3.0, 3.0)
    with pytest.raises(InvalidOptionError, match="alpha=-1") as info:
        o.alpha = -1
    assert "> 0" in str(info.value)
    assert o.alpha == (3.0, 3.0)
    o.output_format = "HDF5"
    assert o.output_format == "HDF5"
    o.weight = [1, 3]
    assert o.weight == [0.25, 0.75]
    with pytest.raises(InvalidOptionError, match="levels"):
        o.levels = 0
    with pytest.raises(InvalidOptionError, match="levels"):
        o.levels = 2.5
    assert o.levels == 100


def test_assignment_of_unknown_attribute_rejected() -> None:
    o = OFOptions()
    with pytest.raises(InvalidOptionError, match="'alhpa'.*did you mean 'alpha'"):
        o.alhpa = 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("field", "bad", "needle"),
    [
        ("levels", 0, ">= 1"),
        ("iterations", -3, ">= 1"),
        ("update_lag", 0, ">= 1"),
        ("bin_size", 0, ">= 1"),
        ("buffer_size", "400", ">= 1"),
        ("cc_up", 0, ">= 1"),
        ("min_level", -2, ">= -1"),
        ("eta", 0, "> 0 and <= 1"),
        ("eta", 1.2, "> 0 and <= 1"),
        ("a_data", 0, "(0, 1]"),
        ("a_data", 1.5, "<= 1"),
        ("a_data", [0.4, 2.0], "<= 1"),
        ("a_smooth", 0, "> 0"),
        ("a_smooth", -1, "> 0"),
        ("warping_steps", 0, ">= 1"),
        ("cc_hw", 4, ">= 8"),
        ("cc_hw", (256, 2), ">= 8"),
        ("cc_hw", (1, 2, 3), "pair"),
        ("save_w", "maybe", "True or False"),
        ("output_typename", "float16", "one of"),
        ("output_format", "begonia", "BEGONIA is not implemented"),
        ("output_format", "hdf6", "one of"),
        ("flow_backend", "diso", "one of"),
        ("naming_convention", "fancy", "one of"),
        ("input_file", 3.5, "path"),
        ("backend_params", {"x": object()}, "JSON-compatible"),
    ],
)
def test_invalid_values_name_the_field(field: str, bad: object, needle: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        OFOptions(**{field: bad})
    msg = str(info.value)
    assert field in msg
    assert needle in msg
    assert "Fix:" in msg
    o = OFOptions()
    with pytest.raises(InvalidOptionError, match=field):
        setattr(o, field, bad)


def test_several_errors_reported_together() -> None:
    with pytest.raises(InvalidOptionError) as info:
        OFOptions(levels=0, eta=2)
    assert "levels" in str(info.value) and "eta" in str(info.value)


def test_long_values_are_summarised_in_messages() -> None:
    with pytest.raises(InvalidOptionError, match="weight") as info:
        OFOptions(weight=-np.ones((500, 500)))
    assert len(str(info.value)) < 600


# ---- weight --------------------------------------------------------------------------------------


def test_weight_normalisation() -> None:
    o = OFOptions(weight=[1, 2])
    assert o.weight == pytest.approx([1 / 3, 2 / 3])
    assert sum(o.weight) == pytest.approx(1.0)
    assert OFOptions(weight=np.array([2.0, 2.0])).weight == [0.5, 0.5]
    assert OFOptions(weight=5).weight == [1.0]
    # idempotent: re-validating stored weights never changes them
    assert OFOptions(weight=o.weight).weight == o.weight


@pytest.mark.parametrize("bad", [[-1, 2], [0, 0], [], np.ones((2, 2, 2, 2)), [1.0, float("inf")]])
def test_weight_invalid(bad: object) -> None:
    with pytest.raises(InvalidOptionError, match="weight"):
        OFOptions(weight=bad)


def test_weight_spatial_maps_kept() -> None:
    m2 = np.random.default_rng(0).random((6, 5)).astype(np.float32)
    o = OFOptions(weight=m2)
    assert isinstance(o.weight, np.ndarray) and o.weight.dtype == np.float32
    np.testing.assert_array_equal(o.weight, m2)
    m2[0, 0] = 99  # the options hold a copy
    assert o.weight[0, 0] != 99
    m3 = np.ones((6, 5, 3))
    assert OFOptions(weight=m3).weight.shape == (6, 5, 3)


def test_channel_weights_one_rule_for_options_and_engine() -> None:
    from flowreg_dask.core.params import FlowParams

    # the default [0.5, 0.5] means equal weights, for any channel count, everywhere
    np.testing.assert_allclose(channel_weights([0.5, 0.5], 3), [1 / 3] * 3)
    o = OFOptions()
    assert [o.get_weight_at(c, 3) for c in range(3)] == pytest.approx([1 / 3] * 3)
    params = FlowParams.from_options(o)
    np.testing.assert_allclose(params.weight_array(4, 5, 3), [1 / 3] * 3)
    # another vector: one weight per channel, renormalised; a wrong length is an error
    o = OFOptions(weight=[1.0, 3.0])
    np.testing.assert_allclose(channel_weights(o.weight, 2), [0.25, 0.75])
    assert o.get_weight_at(1, 2) == pytest.approx(0.75)
    for bad in ([0.2, 0.3, 0.5], [1.0]):
        with pytest.raises(InvalidOptionError, match="one weight per channel"):
            FlowParams.from_options(OFOptions(weight=bad)).weight_array(4, 5, 2)
        with pytest.raises(InvalidOptionError, match="one weight per channel"):
            OFOptions(weight=bad).get_weight_at(0, 2)
    assert o.weight == [0.25, 0.75]  # never changed by a call (pyflowreg wrote back)
    with pytest.raises(InvalidOptionError, match="n_channels"):
        channel_weights([1.0], 0)
    with pytest.raises(InvalidOptionError, match="channel=2"):
        o.get_weight_at(2, 2)


def test_channel_weights_spatial() -> None:
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = channel_weights(m, 2)
    assert out.shape == (3, 4, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 1], m)
    np.testing.assert_array_equal(OFOptions(weight=m).get_weight_at(1, 2), m)
    assert channel_weights(m, 2, 3, 4).shape == (3, 4, 2)
    with pytest.raises(InvalidOptionError, match="weight"):
        channel_weights(m, 2, 5, 4)
    with pytest.raises(InvalidOptionError, match="weight"):
        channel_weights(np.ones((3, 4, 2)), 3)


def test_a_data_per_channel() -> None:
    from flowreg_dask.core.params import FlowParams

    np.testing.assert_array_equal(
        FlowParams.from_options(OFOptions()).a_data_vector(3), np.float32([0.45, 0.45, 0.45])
    )
    o = OFOptions(a_data=[0.3, 0.9])
    assert o.a_data == (0.3, 0.9)
    np.testing.assert_allclose(FlowParams.from_options(o).a_data_vector(2), [0.3, 0.9])
    with pytest.raises(InvalidOptionError, match="a_data"):
        FlowParams.from_options(o).a_data_vector(3)
    assert OFOptions(a_data=[0.5]).a_data == 0.5


def test_aliases_accepted_everywhere() -> None:
    from flowreg_dask import get_displacement
    from flowreg_dask.store.export import _resolve_format

    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    assert OFOptions(constancy_assumption="grey").constancy_assumption == "gray"
    get_displacement(img, img, constancy_assumption="grey", quality_setting="fast")
    assert OFOptions(output_format="caiman").output_format is OutputFormat.CAIMAN_HDF5
    assert _resolve_format("caiman").name == "caiman_hdf5"


def test_presets_and_min_level_coupling() -> None:
    assert dict(QUALITY_PRESETS) == {"quality": 0, "balanced": 4, "fast": 6}
    for name, level in QUALITY_PRESETS.items():
        assert OFOptions(quality_setting=name.upper()).effective_min_level == level
    o = OFOptions(quality_setting="fast")
    o.min_level = 2
    assert o.quality_setting == "custom" and o.effective_min_level == 2
    o.min_level = 3
    assert o.quality_setting == "custom"
    o.min_level = -1
    assert o.quality_setting == "fast" and o.effective_min_level == 6  # previous preset restored
    o.min_level = 1
    o.quality_setting = "balanced"  # choosing a preset resets min_level
    assert o.min_level == -1 and o.effective_min_level == 4
    o.quality_setting = "custom"
    assert o.effective_min_level == 0  # custom with min_level -1 -> max(-1, 0)
    o.min_level = -1
    assert o.quality_setting == "balanced"


def test_min_level_at_construction_switches_to_custom() -> None:
    o = OFOptions(quality_setting="balanced", min_level=2)
    assert o.quality_setting == "custom" and o.effective_min_level == 2
    o.min_level = -1
    assert o.quality_setting == "balanced"
    assert OFOptions(min_level=0).quality_setting == "custom"


def test_load_preset() -> None:
    o = load_preset("Balanced", alpha=2)
    assert o.quality_setting == "balanced" and o.alpha == (2.0, 2.0)
    assert load_preset("fast", min_level=1).quality_setting == "custom"
    with pytest.raises(InvalidOptionError, match="quality_setting"):
        load_preset("ultra")


# ---- enums and aliases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("constancy_assumption", "gradient", "gc"),
        ("constancy_assumption", "GC", "gc"),
        ("constancy_assumption", "brightness", "gray"),
        ("constancy_assumption", "gray", "gray"),
        ("constancy_assumption", "census", "cs"),
        ("constancy_assumption", "cs", "cs"),
        ("flow_backend", "flowreg", "numba"),
        ("flow_backend", "NUMBA", "numba"),
        ("flow_backend", "cupy", "cupy"),
        ("output_format", "hdf5", "HDF5"),
        ("output_format", "mat", "MAT"),
        ("output_format", "suite2p_tiff", "SUITE2P_TIFF"),
        ("output_format", "multifile_tiff", "MULTIFILE_TIFF"),
        ("output_format", "null", "NULL"),
        ("output_format", "Array", "ARRAY"),
        ("output_format", "caiman", "CAIMAN_HDF5"),
        ("interpolation_method", "NEAREST", "nearest"),
        ("interpolation_method", "Linear", "linear"),
        ("channel_normalization", "SEPARATE", "separate"),
        ("quality_setting", "Fast", "fast"),
        ("naming_convention", "BATCH", "batch"),
        ("output_typename", "Double", "double"),
        ("output_typename", np.float32, "float32"),
    ],
)
def test_enum_normalisation_and_aliases(field: str, value: object, expected: str) -> None:
    assert getattr(OFOptions(**{field: value}), field) == expected
    o = OFOptions()
    setattr(o, field, value)
    assert getattr(o, field) == expected


def test_enum_error_lists_choices() -> None:
    with pytest.raises(InvalidOptionError) as info:
        OFOptions(constancy_assumption="grey-ish")
    msg = str(info.value)
    assert "constancy_assumption" in msg and "'gc'" in msg and "'cs'" in msg


# ---- GNC -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good", [(0.0, 1.0), [0, 0.5, 1], np.array([0.0, 0.5, 0.5, 1.0]), (0, 1 - 1e-9)]
)
def test_gnc_schedule_valid(good: object) -> None:
    o = OFOptions(gnc_schedule=good, warping_steps=3)
    assert isinstance(o.gnc_schedule, tuple) and len(o.gnc_schedule) >= 2


@pytest.mark.parametrize(
    "bad",
    [
        (1.0,),
        (0.0,),
        (0.5, 1.0),
        (0.0, 0.5),
        (0.0, 0.7, 0.5, 1.0),
        (0.0, 1.5, 1.0),
        (-0.1, 1.0),
        0.5,
        "0,1",
    ],
)
def test_gnc_schedule_invalid(bad: object) -> None:
    with pytest.raises(InvalidOptionError, match="gnc_schedule"):
        OFOptions(gnc_schedule=bad)


# ---- sigma ---------------------------------------------------------------------------------------


def test_sigma_shapes() -> None:
    o = OFOptions(sigma=[2, 2, 0.5])
    assert o.sigma == [[2.0, 2.0, 0.5]]
    np.testing.assert_array_equal(o.get_sigma_at(0), [2, 2, 0.5])
    np.testing.assert_array_equal(o.get_sigma_at(5), [2, 2, 0.5])
    o = OFOptions(sigma=np.array([[1, 1, 0], [2, 3, 4]]))
    assert o.sigma == [[1.0, 1.0, 0.0], [2.0, 3.0, 4.0]]
    np.testing.assert_array_equal(o.get_sigma_at(1), [2, 3, 4])
    np.testing.assert_array_equal(o.get_sigma_at(2), [2, 3, 4])  # beyond the matrix -> last row
    s = o.get_sigma_at(0)
    s[0] = 100
    assert o.sigma[0][0] == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        [1, 1],
        [[1, 1, 1, 1]],
        [1, -1, 0.1],
        [[1, 1, 0.1], [1, 1, -0.1]],
        1.0,
        [],
        [1, float("nan"), 0],
    ],
)
def test_sigma_invalid(bad: object) -> None:
    with pytest.raises(InvalidOptionError, match="sigma"):
        OFOptions(sigma=bad)


# ---- reference -----------------------------------------------------------------------------------


def test_reference_frames_variants(tmp_path: Path) -> None:
    assert OFOptions(reference_frames=range(3)).reference_frames == [0, 1, 2]
    assert OFOptions(reference_frames=np.arange(2, 5)).reference_frames == [2, 3, 4]
    p = OFOptions(reference_frames=str(tmp_path / "ref.tif")).reference_frames
    assert p == tmp_path / "ref.tif" and isinstance(p, Path)
    ref = np.zeros((4, 5, 2), np.uint16)
    got = OFOptions(reference_frames=ref).reference_frames
    assert isinstance(got, np.ndarray) and got.dtype == np.uint16 and got.shape == (4, 5, 2)
    for bad in ([], [-1], [1.5], np.zeros((2, 3, 4, 5)), [True]):
        with pytest.raises(InvalidOptionError, match="reference_frames"):
            OFOptions(reference_frames=bad)


# ---- unknown and legacy keys ---------------------------------------------------------------------


def test_unknown_key_rejected() -> None:
    with pytest.raises(InvalidOptionError, match="'alpah'.*did you mean 'alpha'"):
        OFOptions(alpah=2)
    with pytest.raises(InvalidOptionError, match="bogus"):
        OFOptions.from_dict({"bogus": 1})


def test_pyflowreg_fields_are_accepted_without_warning() -> None:
    pyflowreg_only = {
        "channel_idx": None,
        "save_valid_mask": False,
        "min_frames_per_reference": 20,
        "n_references": 1,
        "preproc_funct": None,
        "get_displacement_impl": None,
        "get_displacement_factory": None,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o = OFOptions.from_dict({"alpha": 2.0, **pyflowreg_only})
    assert o == OFOptions(alpha=2.0)
    assert OFOptions(channel_idx=1).channel_idx == [1]
    assert OFOptions(channel_idx=[1, 0]).channel_idx == [1, 0]
    assert OFOptions(save_valid_mask=True).save_valid_idx is True
    with pytest.raises(InvalidOptionError, match="channel_idx"):
        OFOptions(channel_idx=[0, 0])
    with pytest.raises(InvalidOptionError, match="channel_idx"):
        OFOptions(channel_idx=[-1])


def test_pyflowreg_fields_with_unsupported_values_say_what_to_do() -> None:
    with pytest.raises(InvalidOptionError, match="n_references.*separately"):
        OFOptions.from_dict({"n_references": 2})
    with pytest.raises(InvalidOptionError, match="n_references"):
        OFOptions(n_references=3)
    with pytest.raises(InvalidOptionError, match="get_displacement_impl.*callable"):
        OFOptions.from_dict({"get_displacement_impl": "solver"})
    fn = lambda ref, mov, **kw: np.zeros(ref.shape[:2] + (2,))  # noqa: E731
    o = OFOptions(get_displacement_impl=fn, preproc_funct=np.asarray)
    assert o.get_displacement_impl is fn
    assert "get_displacement_impl" not in o.to_json_dict()  # functions are not saved


# ---- flow kwargs, copy, repr ---------------------------------------------------------------------


def test_to_dict_gives_pyflowreg_flow_kwargs() -> None:
    kw = OFOptions().to_dict()
    assert set(kw) == FLOW_KWARGS
    assert kw["alpha"] == (1.5, 1.5) and kw["min_level"] == 0 and kw["a_data"] == 0.45
    assert kw["const_assumption"] == "gc" and kw["weight"] == [0.5, 0.5]
    kw = OFOptions(quality_setting="fast", a_data=[0.3, 0.4]).to_dict()
    assert kw["min_level"] == 6 and kw["a_data"] == (0.3, 0.4)
    o = OFOptions(weight=np.ones((3, 3)))
    kw = o.to_dict()
    kw["weight"][0, 0] = 7
    assert o.weight[0, 0] == 1


def test_copy_is_deep_and_accepts_overrides() -> None:
    o = OFOptions(weight=np.ones((2, 2)), quality_setting="fast")
    o.min_level = 2
    c = o.copy()
    assert c == o and c is not o
    c.weight[0, 0] = 5
    assert o.weight[0, 0] == 1
    c.min_level = -1
    assert c.quality_setting == "fast"  # remembered preset copied too
    d = o.copy(alpha=7)
    assert d.alpha == (7.0, 7.0) and o.alpha == (1.5, 1.5)
    with pytest.raises(InvalidOptionError, match="alpha"):
        o.copy(alpha=-7)


def test_repr_is_short() -> None:
    r = repr(OFOptions(alpha=3, reference_frames=np.zeros((512, 512))))
    assert r.startswith("OFOptions(") and "alpha=(3.0, 3.0)" in r
    assert "array(shape=(512, 512)" in r and len(r) < 200
    assert len(repr(OFOptions(reference_frames=list(range(1000))))) < 200


def test_equality_with_arrays() -> None:
    a = OFOptions(weight=np.ones((2, 2), np.float32))
    assert a == OFOptions(weight=np.ones((2, 2), np.float32))
    assert a != OFOptions(weight=np.ones((2, 2), np.float64))
    assert a != OFOptions()


# ---- serialisation -------------------------------------------------------------------------------


def test_to_json_dict_is_json_ready(tmp_path: Path) -> None:
    o = _all_changed(tmp_path)
    d = o.to_json_dict()
    json.dumps(d)  # no TypeError
    assert d["alpha"] == [2.0, 3.5] and d["output_path"] == str(tmp_path / "out dir")
    assert OFOptions.from_dict(d) == o
    d2 = OFOptions(reference_frames=np.eye(3, dtype=np.uint8)).to_json_dict()
    assert d2["reference_frames"]["dtype"] == "|u1"
    back = OFOptions.from_dict(json.loads(json.dumps(d2)))
    assert back.reference_frames.dtype == np.uint8


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_save_load_roundtrip_default(tmp_path: Path, suffix: str) -> None:
    o = OFOptions()
    path = o.save(tmp_path / f"options{suffix}")
    assert path.is_file()
    assert OFOptions.load(path) == o


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_save_load_roundtrip_all_changed(tmp_path: Path, suffix: str) -> None:
    o = _all_changed(tmp_path)
    for name, info in OFOptions.model_fields.items():
        if info.exclude or name == "n_references":  # functions; 1 is its only value
            continue
        assert getattr(o, name) != info.get_default(call_default_factory=True), name
    back = OFOptions.load(o.save(tmp_path / f"opts{suffix}"))
    assert back == o
    assert back.quality_setting == "custom" and back.min_level == 3
    assert back.input_file == tmp_path / "in.tif"


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_save_load_roundtrip_arrays(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    wmap = rng.random((5, 7, 2)).astype(np.float32)
    ref = rng.integers(0, 60000, size=(5, 7)).astype(np.uint16)
    o = OFOptions(weight=wmap, reference_frames=ref, quality_setting="balanced")
    path = o.save(tmp_path / "sub" / f"o{suffix}")
    assert (path.parent / "o.weight.npy").is_file()
    assert (path.parent / "o.reference_frames.npy").is_file()
    back = OFOptions.load(path)
    assert back == o
    assert back.weight.dtype == np.float32 and back.reference_frames.dtype == np.uint16
    (path.parent / "o.weight.npy").unlink()
    with pytest.raises(RecordingNotFoundError, match="weight"):
        OFOptions.load(path)


def test_json_roundtrip_string_with_arrays() -> None:
    o = OFOptions(weight=np.arange(6, dtype=np.float64).reshape(2, 3), reference_frames=range(4))
    text = o.to_json()
    assert OFOptions.from_json(text) == o
    assert json.loads(text)["weight"]["shape"] == [2, 3]


def test_toml_file_is_readable_and_omits_none(tmp_path: Path) -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")

    path = OFOptions(output_typename=None).save(tmp_path / "o.toml")
    data = tomllib.loads(path.read_text())
    assert "output_typename" not in data and "gnc_schedule" not in data
    assert data["alpha"] == [1.5, 1.5] and data["backend_params"] == {}


def test_load_pyflowreg_json_with_header(tmp_path: Path) -> None:
    pyflowreg = {
        "input_file": "/data/rec.tif",
        "output_path": "results",
        "output_format": "HDF5",
        "output_file_name": None,
        "channel_idx": None,
        "alpha": [2.0, 2.0],
        "weight": [0.7, 0.3],
        "levels": 100,
        "min_level": -1,
        "quality_setting": "balanced",
        "eta": 0.8,
        "update_lag": 5,
        "iterations": 50,
        "a_smooth": 1.0,
        "a_data": 0.45,
        "gnc_schedule": None,
        "warping_steps": None,
        "sigma": [[1.0, 1.0, 0.1], [1.0, 1.0, 0.1]],
        "bin_size": 1,
        "buffer_size": 400,
        "reference_frames": list(range(50, 500)),
        "update_reference": False,
        "n_references": 1,
        "min_frames_per_reference": 20,
        "verbose": False,
        "save_meta_info": True,
        "save_w": False,
        "save_valid_mask": False,
        "save_valid_idx": False,
        "output_typename": "double",
        "channel_normalization": "joint",
        "interpolation_method": "cubic",
        "cc_initialization": False,
        "cc_hw": 256,
        "cc_up": 1,
        "update_initialization_w": True,
        "naming_convention": "default",
        "constancy_assumption": "gc",
        "flow_backend": "flowreg",
        "backend_params": {},
    }
    path = tmp_path / "options.json"
    path.write_text("Compensation options 2025-01-31\n\n" + json.dumps(pyflowreg, indent=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o = OFOptions.load(path)
    assert o.output_format == "HDF5" and o.flow_backend == "numba"
    assert o.alpha == (2.0, 2.0) and o.quality_setting == "balanced"
    assert o.effective_min_level == 4 and o.output_typename == "double"
    assert o.input_file == Path("/data/rec.tif")
    assert o.resolved_output_dtype() == np.float64


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(RecordingNotFoundError, match="missing.json"):
        OFOptions.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("no json here")
    with pytest.raises(InvalidOptionError, match="bad.json"):
        OFOptions.load(bad)
    with pytest.raises(InvalidOptionError, match="suffix"):
        OFOptions().save(tmp_path / "o.yaml")
    with pytest.raises(InvalidOptionError, match="None"):
        OFOptions(backend_params={"x": None}).save(tmp_path / "o.toml")


def test_saving_options_has_no_side_effects(tmp_path: Path) -> None:
    o = _all_changed(tmp_path)
    before = o.copy()
    o.save(tmp_path / "a.json")
    o.save(tmp_path / "a.toml")
    o.to_json_dict()
    assert o == before


def test_schema_and_table() -> None:
    schema = OFOptions.model_json_schema()
    assert "alpha" in schema["properties"]
    for name, info in OFOptions.model_fields.items():
        assert info.description, name
    table = options_table()
    assert "| `alpha` |" in table and "| `reference_frames` |" in table
    assert "| `n_jobs` |" in options_table(RegistrationConfig)


# ---- RegistrationConfig --------------------------------------------------------------------------


def test_registration_config_defaults() -> None:
    c = RegistrationConfig()
    assert c.n_jobs == -1 and c.parallelization is None and c.scheduler_address is None
    assert c.verbose is False and c.progress is True
    assert c.resolved_n_jobs() == (os.cpu_count() or 1)
    assert c.resolved_parallelization() == "threading"
    assert RegistrationConfig(n_jobs=3).resolved_n_jobs() == 3


def test_registration_config_validation() -> None:
    for bad in (0, -2, 1.5, "all"):
        with pytest.raises(InvalidOptionError, match="n_jobs"):
            RegistrationConfig(n_jobs=bad)
    with pytest.raises(InvalidOptionError, match="parallelization"):
        RegistrationConfig(parallelization="gpu")
    assert RegistrationConfig(parallelization="Threads").parallelization == "threading"
    assert RegistrationConfig(parallelization="processes").parallelization == "multiprocessing"
    with pytest.raises(InvalidOptionError, match="unknown RegistrationConfig"):
        RegistrationConfig(workers=2)
    with pytest.raises(InvalidOptionError, match="scheduler_address"):
        RegistrationConfig(scheduler_address="   ")


def test_registration_config_scheduler_address() -> None:
    c = RegistrationConfig(scheduler_address="tcp://127.0.0.1:8786")
    assert c.resolved_parallelization() == "distributed"
    with pytest.raises(InvalidOptionError, match="scheduler_address"):
        RegistrationConfig(scheduler_address="tcp://h:1", parallelization="threading")
    c = RegistrationConfig(parallelization="distributed", scheduler_address="tcp://h:1")
    assert c.resolved_parallelization() == "distributed"
    with pytest.raises(InvalidOptionError, match="scheduler_address"):
        c.parallelization = "sequential"
    assert c.parallelization == "distributed"  # failed assignment leaves the config unchanged
    c.scheduler_address = None
    c.parallelization = "sequential"
    assert c.resolved_parallelization() == "sequential"
    with pytest.raises(InvalidOptionError, match="n_jobs"):
        c.n_jobs = 0
    assert c.n_jobs == -1


def test_no_warnings_for_clean_options(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o = _all_changed(tmp_path)
        OFOptions.load(o.save(tmp_path / "x.json"))
