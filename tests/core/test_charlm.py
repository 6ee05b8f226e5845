"""charlm: the byte-level transformer family, its stdlib corpus and its market (issue 15)."""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from backend.cli.common import out
from backend.cli.demo import print_demo
from backend.cli.main import app
from backend.core import codec
from backend.core.datasets import (
    Dataset,
    check_fits,
    from_npz_bytes,
    stdlib_split,
    to_npz_bytes,
)
from backend.core.errors import DataError
from backend.core.jobspec import JobSpec, explain_validation_error
from backend.core.models import (
    ModelSpec,
    batch_loss,
    build_model,
    evaluate,
    get_weights,
    set_weights,
    template_of,
)
from backend.simulation.demo import CharLMDemo, DemoConfig, run_demo

CONTEXT = 16


def small_spec(**kw: object) -> ModelSpec:
    return ModelSpec(
        family="charlm", input_dim=CONTEXT, num_classes=256, width=32, depth=1, heads=4, **kw
    )


def rows(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, CONTEXT), generator=gen).float()
    return x, torch.randint(0, 256, (n,), generator=gen)


# -- the model ---------------------------------------------------------------------------------
def test_builds_deterministically_and_round_trips_through_codec_and_template() -> None:
    spec = small_spec(seed=3)
    w1, w2 = get_weights(build_model(spec)), get_weights(build_model(spec))
    assert w1.keys() == w2.keys() and all(np.array_equal(w1[k], w2[k]) for k in w1)
    other = get_weights(build_model(small_spec(seed=4)))
    assert not np.array_equal(w1["tok.weight"], other["tok.weight"])
    template = template_of(spec)
    assert template.size == sum(v.size for v in w1.values())
    back = codec.decode(codec.encode(w1), template)
    flat = template.flatten(back)
    assert np.array_equal(template.flatten(template.unflatten(flat)), flat)
    model = build_model(small_spec(seed=9), dtype=torch.float64)
    set_weights(model, back)
    x, _ = rows(4)
    ref = build_model(spec).eval()
    with torch.no_grad():
        np.testing.assert_allclose(model(x.double()).numpy(), ref(x).numpy(), atol=1e-5)


def test_loss_is_the_next_byte_loss_at_every_position() -> None:
    """Targets are x[1:] then y; the mean runs over rows x context tokens, not the last one."""
    spec = small_spec()
    model = build_model(spec, dtype=torch.float64).eval()
    x, y = rows(5)
    x = x.double()
    with torch.no_grad():
        logits = model(x)  # (5, CONTEXT, 256)
        targets = torch.cat([x[:, 1:].long(), y[:, None]], dim=1)
        expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), targets.reshape(-1))
        last_only = torch.nn.functional.cross_entropy(logits[:, -1], y)
        loss = batch_loss(spec, model, x, y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert abs(loss.item() - last_only.item()) > 1e-6
    w = get_weights(model)
    loss_eval, acc = evaluate(spec, w, x.float().numpy(), y.numpy())
    assert loss_eval == pytest.approx(expected.item(), rel=1e-5)
    per_token = (logits.argmax(-1) == targets).double().mean().item()
    assert acc == pytest.approx(per_token)


def test_attention_is_causal() -> None:
    """A byte never sees the bytes after it: changing the last one changes only its logits."""
    model = build_model(small_spec(), dtype=torch.float64).eval()
    x, _ = rows(2)
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % 256
    with torch.no_grad():
        a, b = model(x.double()), model(x2.double())
    assert torch.equal(a[:, :-1], b[:, :-1])
    assert not torch.equal(a[:, -1], b[:, -1])


def test_bad_tokens_are_one_clear_error() -> None:
    spec = small_spec()
    model = build_model(spec)
    x, y = rows(2)
    for bad in (x + 0.5, x + 256, x[:, :-1]):
        with pytest.raises(DataError, match="charlm"):
            batch_loss(spec, model, bad, y)


# -- the spec ----------------------------------------------------------------------------------
def test_other_families_keep_their_canonical_bytes() -> None:
    """width/depth/heads are left out unless set: an mlp spec's bytes (its hash) are unchanged."""
    blob = JobSpec().to_bytes()
    assert b'"model":{"family":"mlp","hidden":[64],"input_dim":64,"num_classes":10,' in blob
    assert b"width" not in blob
    lm = JobSpec(model=ModelSpec(family="charlm", input_dim=32, num_classes=256))
    assert (lm.model.width, lm.model.depth, lm.model.heads) == (64, 2, 4)  # filled in
    assert JobSpec.from_bytes(lm.to_bytes()).to_bytes() == lm.to_bytes()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"family": "charlm", "input_dim": 32, "num_classes": 10}, "num_classes must be 256"),
        (
            {"family": "charlm", "input_dim": 32, "num_classes": 256, "width": 30, "heads": 4},
            "width (30) must be a multiple of its heads (4)",
        ),
        (
            {"family": "charlm", "input_dim": 32, "num_classes": 256, "depth": 0},
            "must be positive",
        ),
        ({"family": "mlp", "heads": 2}, "settings of the charlm family only"),
        # an owner's spec that no round could be computed for (the aggregator would lose its
        # bond): the attention's size is bounded
        ({"family": "charlm", "input_dim": 2048, "num_classes": 256}, "at most 1024 bytes"),
        (
            {"family": "charlm", "input_dim": 64, "num_classes": 256, "width": 64, "heads": 64},
            "width / heads must be at least 8",
        ),
        (
            {"family": "charlm", "input_dim": 1024, "num_classes": 256, "heads": 8, "depth": 4},
            "attention scores per row; at most 8,388,608",
        ),
        (
            {"family": "charlm", "input_dim": 32, "num_classes": 256, "width": 4096},
            "width must be at most 1024",
        ),
    ],
)
def test_spec_errors_are_one_line(model: dict, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate({"model": model})
    line = explain_validation_error(info.value, JobSpec, "job.toml")
    assert message in line and "\n" not in line and line.startswith("job.toml: model")


# -- the stdlib corpus -------------------------------------------------------------------------
def test_stdlib_loads_offline_and_shards_by_module(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_: object, **__: object) -> None:
        raise AssertionError("the stdlib corpus must not touch the network")

    monkeypatch.setattr(socket, "socket", no_network)
    split = stdlib_split(4, CONTEXT, 6000, 5000, 3000, module_bytes=2048, seed=1)
    again = stdlib_split(4, CONTEXT, 6000, 5000, 3000, module_bytes=2048, seed=1)
    assert split.shard_modules == again.shard_modules
    assert all(np.array_equal(a.x, b.x) for a, b in zip(split.shards, again.shards, strict=True))
    groups = [*split.shard_modules, split.validation_modules, split.test_modules]
    names = [m for g in groups for m in g]
    assert len(names) == len(set(names))  # every module in one place only
    assert all(len(g) == 3 for g in split.shard_modules)  # 6000 bytes at 2048 per module
    for part in [*split.shards, split.validation, split.test]:
        check_fits(from_npz_bytes(to_npz_bytes(part)), CONTEXT, 256, min_rows=10)
    first = split.shards[0]
    assert len(first) == (6000 - 1) // CONTEXT
    # row k+1 starts with row k's label: consecutive windows of one text
    assert np.array_equal(first.x[1:, 0], first.y[:-1].astype(np.float32))
    other = stdlib_split(4, CONTEXT, 6000, 5000, 3000, module_bytes=2048, seed=2)
    assert other.shard_modules != split.shard_modules


def test_data_split_writes_stdlib_shards(tmp_path) -> None:
    out = tmp_path / "d"
    result = CliRunner().invoke(
        app, ["data", "split", "stdlib", "--parts", "2", "--context", "24", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    shard = from_npz_bytes((out / "shard-1.npz").read_bytes())
    check_fits(shard, 24, 256)
    result = CliRunner().invoke(app, ["data", "split", "stdlib", "--non-iid", "0.5"])
    assert result.exit_code == 1 and "does not apply to stdlib" in result.output


def test_demo_refuses_charlm_options_in_one_line() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--model", "charlm", "--non-iid", "0.5"])
    assert result.exit_code == 1 and "--non-iid is for the mlp demo" in result.output
    result = runner.invoke(app, ["demo", "--model", "gpt"])
    assert result.exit_code == 1 and "unknown model 'gpt'" in result.output


# -- a whole market on it ----------------------------------------------------------------------
def test_market_on_charlm_learns_and_does_not_pay_the_attacker(tmp_path) -> None:
    """A reduced charlm market (4 trainers, one sign-flipping): the posted validation loss falls
    round over round, honest trainers are paid, the attacker is flagged and earns nothing, and
    an auditor re-running every round gets the same results."""
    lm = CharLMDemo(
        context=CONTEXT,
        width=32,
        depth=1,
        heads=4,
        shard_bytes=4096,
        validation_bytes=3072,
        test_bytes=2048,
        module_bytes=2048,
    )
    cfg = DemoConfig(
        trainers=4,
        attackers=1,
        rounds=2,
        model="charlm",
        charlm=lm,
        store_dir=tmp_path / "s",
        audit=True,
    )
    result = run_demo(cfg)
    s = result.summary
    json.dumps(s)  # the --json summary stays JSON
    with out.capture() as printed:
        print_demo(result)
    assert "val ppl" in printed.get() and "next byte" in printed.get()
    assert len(s["val_loss"]) == 2 and s["val_loss"][1] < s["val_loss"][0] < math.log(256)
    assert s["val_ppl"] == [round(math.exp(v), 3) for v in s["val_loss"]]
    assert s["audit"] == {"rounds_verified": 2, "mismatches": 0}  # re-run: same results
    *honest, bad = s["trainers"]
    assert bad["attack"] == "sign_flip" and bad["flagged_rounds"] == 2
    assert bad["reward_wei"] == 0 and bad["score_total"] == 0 and bad["slashed_wei"] > 0
    assert all(t["reward_wei"] > 0 and t["flagged_rounds"] == 0 for t in honest)


def test_label_flip_flips_every_charlm_target() -> None:
    """For charlm the bytes are labels too: a label flip that left x alone would poison one
    target in `context` and be paid as honest."""
    from trainer_client.adversaries import poison_data

    split = stdlib_split(1, CONTEXT, 2048, 1024, 1024)
    data = split.shards[0]
    lm = poison_data("label_flip", data, 256, "charlm")
    assert np.array_equal(lm.x, 255 - data.x) and np.array_equal(lm.y, 255 - data.y)
    mlp = poison_data("label_flip", data, 256)
    assert np.array_equal(mlp.x, data.x) and np.array_equal(mlp.y, 255 - data.y)


def test_owner_validation_file_must_hold_bytes(tmp_path) -> None:
    """A charlm job's validation file with non-byte features is refused when read, in one line
    naming the file (not mid-round in the aggregator)."""
    from backend.owner.publish import load_validation

    spec = JobSpec(model=small_spec())
    x, y = rows(12)
    good, bad = tmp_path / "val.npz", tmp_path / "bad.npz"
    good.write_bytes(to_npz_bytes(Dataset(x.numpy(), y.numpy())))
    bad.write_bytes(to_npz_bytes(Dataset(x.numpy() / 255.0, y.numpy())))
    assert len(load_validation(good, spec)) == 12
    with pytest.raises(DataError, match=r"bad\.npz does not fit .*integers 0\.\.255"):
        load_validation(bad, spec)


def test_evaluation_in_chunks_is_the_whole_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    """A big validation split is evaluated in fixed chunks of bounded memory; the loss, the
    accuracy and the scoring gradient are those of the whole split."""
    from backend.core import models

    spec = ModelSpec(family="charlm", input_dim=16, num_classes=256, width=16, depth=1, heads=2)
    weights = get_weights(build_model(spec))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 16)).astype(np.float32)
    y = rng.integers(0, 256, 50)
    whole = models.evaluate(spec, weights, x, y), models.loss_gradient(spec, weights, x, y)
    monkeypatch.setattr(models, "EVAL_CHUNK_CELLS", spec.attention_cells * 7)
    assert len(models.row_chunks(spec, 50)) == 8
    (loss, acc), grad = (
        models.evaluate(spec, weights, x, y),
        models.loss_gradient(spec, weights, x, y),
    )
    assert loss == pytest.approx(whole[0][0], rel=1e-12) and acc == whole[0][1]
    assert all(np.allclose(grad[k], whole[1][k], rtol=0, atol=1e-14) for k in grad)
