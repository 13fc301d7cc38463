"""The carry codec: DeepSpeed's checkpoint trees <-> safetensors + JSON, nothing unpickled."""

from __future__ import annotations

import collections
import json

import pytest
import torch
from deepspeed.runtime.fp16.loss_scaler import LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

from semacdr_dist.train.carry import decode_tree, encode_tree


def _equal(a, b) -> None:
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _equal(x, y)
    elif isinstance(a, LossScaler):
        assert vars(a) == vars(b)
    else:
        assert a == b


def test_a_deepspeed_shaped_tree_round_trips_through_json_and_tensors():
    flat = torch.arange(12, dtype=torch.float32)
    tree = {
        "module": collections.OrderedDict([("w", flat.view(3, 4)), ("b", torch.zeros(4, dtype=torch.bfloat16))]),
        "param_shapes": [collections.OrderedDict([("w", torch.Size([3, 4]))])],
        "base_optimizer_state": {"state": {0: {"step": torch.tensor(7.0), "exp_avg": flat.clone()}},
                                 "param_groups": [{"betas": (0.9, 0.999), "params": [0], "fused": None}]},
        "zero_stage": ZeroStageEnum.optimizer_states,
        "param_slice_mappings": [collections.OrderedDict([("w", fragment_address(numel=12, start=0))])],
        "loss_scaler": LossScaler(1.0),
        "dtype": torch.float32,
        "fp32_groups": [flat.view(3, 4).clone()],  # the same bytes and shape as module.w
        "ds_version": "0.19.8", "clip": 1.0, "flags": [True, None],
    }
    tensors: dict[str, torch.Tensor] = {}
    encoded = json.loads(json.dumps(encode_tree(tree, tensors)))
    # equal tensors (dtype, shape, bytes) are stored once
    assert len(tensors) == 4
    _equal(tree, decode_tree(encoded, tensors))


def test_unknown_classes_are_refused_both_ways():
    class Opaque:
        pass

    with pytest.raises(TypeError, match="cannot carry .*Opaque at /x"):
        encode_tree({"x": Opaque()}, {})
    with pytest.raises(TypeError, match="not in carry.ALLOWED_CLASSES"):
        decode_tree({"object": "os.system", "state": {"dict": [], "ordered": False}}, {})


def test_a_carry_interrupted_between_its_renames_is_recovered(tmp_path):
    from semacdr_dist.train.carry import CARRY_FILE, read_carry

    old = tmp_path / ".llm4cdsr.old"
    old.mkdir()
    (old / CARRY_FILE).write_text('{"latest": "checkpoint_a", "next_epoch": 3}')
    assert read_carry(tmp_path / "llm4cdsr") == {"latest": "checkpoint_a", "next_epoch": 3}
    assert (tmp_path / "llm4cdsr" / CARRY_FILE).exists() and not old.exists()
    assert read_carry(tmp_path / "nothing") is None


def test_module_tensors_inside_the_flat_partition_are_stored_as_slices():
    from semacdr_dist.train.carry import SLICE_MIN_NUMEL, share_slices, unshare_slices

    g = torch.Generator().manual_seed(0)
    emb = torch.randn(64, 128, generator=g)  # 8,192 elements: above SLICE_MIN_NUMEL
    bias = torch.randn(8, generator=g)  # too small to be looked for
    other = torch.randn(SLICE_MIN_NUMEL, generator=g)  # not in the partition
    # ZeRO's flat fp32 partition: the parameters back to back, then alignment padding
    flat = torch.cat([bias, emb.reshape(-1), torch.zeros(24)])
    tree = {"module": {"emb": emb.clone(), "bias": bias.clone(), "other": other},
            "optimizer": {"fp32_flat": flat, "exp_avg": torch.randn(flat.numel(), generator=g)}}
    tensors: dict[str, torch.Tensor] = {}
    encoded = json.loads(json.dumps(encode_tree(tree, tensors)))
    slices = json.loads(json.dumps(share_slices(tensors)))
    # only the embedding is a slice (at offset 8 of the flat partition), and it left the pool
    assert [v[1:] for v in slices.values()] == [[8, [64, 128]]]
    assert sum(t.numel() for t in tensors.values()) == flat.numel() * 2 + 8 + SLICE_MIN_NUMEL
    unshare_slices(tensors, slices)
    _equal(tree, decode_tree(encoded, tensors))


def test_slices_match_bit_patterns_and_bf16_tensors_are_looked_for_too():
    from semacdr_dist.train.carry import SLICE_MIN_NUMEL, share_slices, unshare_slices

    n = SLICE_MIN_NUMEL
    base = torch.zeros(2 * n)
    minus_zero = torch.full((n,), -0.0)  # equal in value to a run of `base`, not in bits
    half = torch.randn(2 * n).to(torch.bfloat16)
    tensors = {"base": base, "minus_zero": minus_zero, "half": half, "half_part": half[n:].clone().view(64, -1)}
    slices = share_slices(tensors)
    assert list(slices) == ["half_part"] and slices["half_part"][:2] == ["half", n]
    unshare_slices(tensors, slices)
    assert torch.equal(tensors["half_part"].reshape(-1), half[n:])
    assert torch.signbit(tensors["minus_zero"]).all()
