"""Policies: presets, knobs, TOML round trips, and every bad input's error."""

from __future__ import annotations

import pytest
import torch

import hyclora_hooks as hyclora
from hyclora_hooks.policy import Knobs, Policy, Rule


def test_presets_load_and_round_trip_through_toml_and_dict():
    assert {"baseline", "intra"} <= set(hyclora.preset_names())
    for name in hyclora.preset_names():
        p = hyclora.load_policy(name)
        assert p.name == name
        assert Policy.from_toml(p.to_toml()) == p
        assert Policy.from_dict(p.to_dict()) == p


def test_knobs_reach_codec_parameters():
    p = hyclora.load_policy("intra").with_knobs(bits=2)
    assert "quant2/" in p.summary()
    assert p.knobs.bits == 2


def test_policy_file_by_path(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\n[[rule]]\nop_class = "linear"\ncodec = "quant"\nbits = 8\n')
    with hyclora.compress(str(f)) as ctx:
        pass
    assert ctx.policy.name == "mine"
    assert ctx.policy.rules[0] == Rule(codec="quant", op_class=("linear",), params={"bits": 8})


@pytest.mark.parametrize("knobs, exc, needle", [
    ({"bitz": 4}, TypeError, "bitz"),
    ({"bits": 3}, ValueError, "bits"),
    ({"bits": "4"}, TypeError, "bits"),
    ({"bits": True}, TypeError, "bits"),
    ({"layernorm_outlier_ratio": 0.9}, ValueError, "layernorm_outlier_ratio"),
    ({"softmax_outlier_ratio": -0.1}, ValueError, "softmax_outlier_ratio"),
    ({"iteration_threshold": -1}, ValueError, "iteration_threshold"),
    ({"iteration_threshold": 2.5}, TypeError, "iteration_threshold"),
])
def test_bad_knobs_name_the_knob(knobs, exc, needle):
    with pytest.raises(exc, match=needle) as info:
        hyclora.compress("intra", **knobs)
    assert str(info.value).startswith("hyclora_hooks: ")
    assert isinstance(info.value, hyclora.HycloraError)


def test_unknown_preset_names_it_and_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        hyclora.compress("intra_intre")
    msg = str(info.value)
    assert "intra_intre" in msg and "baseline" in msg and "intra" in msg


def test_bad_policy_type():
    with pytest.raises(TypeError, match="policy"):
        hyclora.compress(42)


def test_missing_policy_file():
    with pytest.raises(ValueError, match="nope.toml"):
        hyclora.compress("nope.toml")


@pytest.mark.parametrize("body, line, field", [
    ('name = "x"\n[[rule]]\nop_class = "linear"\ncodec = "quant"\nbits = 5\n', 5, "bits"),
    ('name = "x"\n[[rule]]\ncodec = "keep"\n[[rule]]\nop_class = "lienar"\ncodec = "keep"\n', 5, "op_class"),
    ('name = "x"\n[[rule]]\ncodec = "zip"\n', 3, "codec"),
    ('name = "x"\n[knobs]\nbits = 4\niteration_threshold = -2\n', 4, "iteration_threshold"),
    ('name = "x"\ncolour = "red"\n', 2, "colour"),
    ('name = "x"\n[[rule]]\ncodec = "quant"\ngroup_sise = 64\n', 4, "group_sise"),
    ('name = "x"\n[[rule]]\ncodec = "quant"\nbits = "$bitz"\n', 4, "bits"),
])
def test_policy_file_errors_name_file_line_and_field(tmp_path, body, line, field):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(hyclora.PolicyFileError) as info:
        hyclora.load_policy(f)
    msg = str(info.value)
    assert msg.startswith(f"{f}:{line}:"), msg
    assert repr(field) in msg


def test_toml_syntax_error_names_the_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("name = \n")
    with pytest.raises(hyclora.PolicyFileError, match="broken.toml"):
        hyclora.load_policy(f)


def test_rules_validate_on_construction():
    with pytest.raises(ValueError, match="op_class"):
        Rule(op_class="nonsense")
    with pytest.raises(TypeError, match="role"):
        Rule(role=3)
    with pytest.raises(ValueError, match="bits"):
        Policy(rules=(Rule(codec="quant", params={"bits": 7}),))
    with pytest.raises(TypeError, match="Rule"):
        Policy(rules=({"codec": "keep"},))
    with pytest.raises(ValueError, match="bits"):
        Knobs(bits=16)


def test_unknown_ops_are_never_caught_by_a_wildcard():
    from hyclora_hooks.sites import SaveSite
    import torch

    site = SaveSite("weird_op", "unknown", "weird_op", "m", "M", "", torch.float32, (128, 128))
    p = Policy(rules=(Rule(codec="quant"),))
    assert p.route(site, 1 << 16, True).codec.name == "keep"
    p2 = Policy(rules=(Rule(codec="quant", op_class="unknown"),))
    assert p2.route(site, 1 << 16, True).codec.name == "quant"


def test_a_policy_file_can_start_from_a_preset(tmp_path):
    from hyclora_hooks.errors import PolicyFileError

    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\nbase = "intra_inter"\n[knobs]\nbits = 2\n'
                 '[[rule]]\nop_class = "mul"\ncodec = "keep"\n')
    p = hyclora.load_policy(f)
    parent = hyclora.load_policy("intra_inter")
    assert p.inter and not p.fuse and p.knobs.bits == 2
    assert p.knobs.layernorm_outlier_ratio == parent.knobs.layernorm_outlier_ratio
    assert p.rules[0].codec == "keep" and p.rules[1:] == parent.rules  # own rules first: they win
    f.write_text('name = "bad"\nbase = "intra_intr"\n')
    with pytest.raises(PolicyFileError, match=r"mine.toml:2: field 'base'.*got 'intra_intr'"):
        hyclora.load_policy(f)


def test_for_bits_limits_a_rule_to_some_widths():
    from hyclora_hooks.sites import SaveSite

    rules = (Rule(codec="quant", op_class="mul", params={"bits": "$bits", "group_size": 32}, for_bits=[4, 8]),
             Rule(codec="quant", op_class="mul", params={"bits": "$bits", "group_size": 64}))
    site = SaveSite("mul", "mul", "swiglu", "model.layers.0.mlp", "LlamaMLP", "silu", torch.float32, (8, 64))
    for bits, group in ((2, 64), (4, 32), (8, 32)):
        pol = Policy(name="p", rules=rules, knobs=Knobs(bits=bits))
        assert pol.route(site, 4096, True).codec.group_size == group
    with pytest.raises(hyclora.HycloraTypeError, match="for_bits"):
        Rule(codec="quant", for_bits=[3])
    text = 'name = "x"\n[[rule]]\nop_class = "mul"\nfor_bits = [4, 16]\ncodec = "quant"\n'
    with pytest.raises(hyclora.PolicyFileError, match=r":4: field 'for_bits'"):
        Policy.from_toml(text, source="x.toml")
    assert Policy.from_dict(Policy(name="p", rules=rules).to_dict()).rules == rules  # round trip


def test_loaded_policies_are_reused_until_their_file_changes(tmp_path):
    """A training loop calls compress(name) every step: the parse and the codecs are built once (immutable
    policies), knob variants too, and an edited file is read again."""
    assert hyclora.load_policy("intra_inter") is hyclora.load_policy("intra_inter")
    p = hyclora.load_policy("intra")
    assert p.with_knobs(bits=2) is p.with_knobs(bits=2)
    assert p.with_knobs(bits=2) is not p.with_knobs(bits=4)
    assert p.with_knobs(min_bytes=1).knobs.min_bytes == 1
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\n[[rule]]\nop_class = "linear"\ncodec = "quant"\nbits = 8\n')
    first = hyclora.load_policy(str(f))
    assert hyclora.load_policy(f) is first
    f.write_text('name = "mine"\n[[rule]]\nop_class = "linear"\ncodec = "quant"\nbits = 4\n  \n')  # new size
    second = hyclora.load_policy(str(f))
    assert second is not first and "quant4/" in second.summary() and "quant8/" in first.summary()


@pytest.mark.parametrize("preset", ["intra", "intra_inter"])
@pytest.mark.parametrize("bits", [2, 4])
def test_rope_cos_sin_stay_exact(preset, bits):
    """RoPE's cos/sin (saved by its muls) are one small copy shared by every layer, and an error in them lands on
    every q/k gradient: no preset stores them lossy, directly or as a recipe's source."""
    from conftest import build

    model, batch = build("llama-sdpa")
    with hyclora.compress(preset, bits=bits, min_bytes=0) as ctx:
        model(**batch).loss.backward()
    rows = [r for r in ctx.report().to_dict()["by_op"] if (r["op"], r["role"]) == ("mul", "rope")]
    assert rows and all(r["codec"] in ("keep", "recompute") for r in rows), rows


@pytest.mark.parametrize("bits, expected", [
    (2, {"query": "quant4/t128", "value": "quant4/g128", "swiglu": "quant4/t128", "silu": "quant4/t128",
         "input": "quant2/g64+o0.005", "scores": "quant4/t64"}),
    (4, {"query": "quant8/t64", "value": "quant4/g32", "swiglu": "quant8/t32", "silu": "quant8/t32",
         "input": "quant4/g64+o0.005", "scores": "quant8/t64"}),
    (8, {"query": "quant8/t64", "value": "quant8/g32", "swiglu": "quant8/t32", "silu": "quant8/t32",
         "input": "quant8/g64+o0.005", "scores": "quant8/t64"}),
])
def test_intra_inter_groups_by_bits(bits, expected):
    """The 2-bit setting gives the tensors floored at 4 bits groups of 128 (SDPA q/k, value, the SwiGLU operands;
    docs/benchmarks.md session 15); the 2-bit sources, eager attention and the 4- and 8-bit settings keep theirs."""
    from hyclora_hooks.policy import load_policy
    from hyclora_hooks.sites import SaveSite

    policy = load_policy("intra_inter").with_knobs(bits=bits)
    classes = {"query": "attention", "value": "attention", "swiglu": "mul", "silu": "activation", "input": "norm",
               "scores": "attention"}
    got = {role: policy.route(SaveSite("op", classes[role], role, "m", "M", "", torch.bfloat16, (4, 4)),
                              1 << 30, True).codec.describe() for role in expected}
    assert got == expected
