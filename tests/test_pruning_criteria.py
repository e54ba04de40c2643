"""Importance criteria by name (Taylor needs real data and the model's loss) and global allocation."""

import pytest
import torch

pytest.importorskip("ultralytics")

from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.models import load_model  # noqa: E402
from edgeprune.pruning import PruneConfig, prune_detector  # noqa: E402


def _out(det, x):
    with torch.no_grad():
        return det.inference_module().eval()(x)


def _yolo(cfg="yolov8n.yaml"):
    torch.manual_seed(0)
    return load_model(cfg, nc=6)


def _bn_buffers(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "batches" in k}


def _stock(det):
    """No rewritten (prunable) block is left and the split blocks have equal halves again."""
    from ultralytics.nn.modules.block import C2f

    from edgeprune.models.ultralytics_blocks import HalvesSplit, OpaqueAttention

    assert not any(isinstance(m, (HalvesSplit, OpaqueAttention)) for m in det.module.modules())
    blocks = [m for m in det.module.modules() if isinstance(m, C2f)]
    assert blocks and all(b.cv1.conv.out_channels == 2 * b.c for b in blocks)


def test_gradients_leave_weights_statistics_and_mode(tiny_data):
    det = _yolo()
    weights = {k: v.clone() for k, v in det.module.state_dict().items()}
    det.module.eval()
    with det.prunable() as module:
        det.accumulate_gradients(tiny_data, batches=2, imgsz=64, batch_size=4)
        grads = [p.grad for n, p in module.named_parameters() if ".dfl." not in n]  # DFL is fixed
        assert not module.training
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    after = det.module.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items())  # BN statistics included
    assert isinstance(det.module.args, dict)


def test_taylor_prunes_with_data_and_differs_from_l2(tiny_data):
    x = torch.rand(1, 3, 64, 64)
    outs, plans = {}, {}
    for name in ("l2", "taylor"):
        det = _yolo()
        shape = _out(det, x).shape
        stats = _bn_buffers(det.module)
        report = prune_detector(
            det,
            PruneConfig(ratio=0.5, round_to=8, importance=name, allocation="global"),
            imgsz=64,
            data=tiny_data,
        )
        assert report.after["macs"] < 0.8 * report.before["macs"]
        outs[name], plans[name] = _out(det, x), {lc.name: lc.after for lc in report.layers}
        assert outs[name].shape == shape
        assert all(p.grad is None for p in det.module.parameters())
        kept = _bn_buffers(det.module)
        assert set(kept) == set(stats)
        _stock(det)
    assert plans["taylor"] != plans["l2"] or not torch.allclose(outs["taylor"], outs["l2"])


def test_taylor_scores_compare_across_groups():
    """Global ranking reads Taylor scores of different groups against each other: a group whose
    channels cost ten times the loss must score ten times higher, not be normalized to look alike."""
    import torch_pruning as tp
    from torch import nn

    from edgeprune.pruning.importance import IMPORTANCE

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.rand(1, 3, 16, 16))
    for p in model.parameters():
        p.data.fill_(1.0)
        p.grad = torch.ones_like(p)
    model[0].weight.grad *= 10  # removing a channel of the first conv costs ten times the loss
    model[0].bias.grad *= 10
    score = IMPORTANCE.get("taylor")()
    first = score(graph.get_pruning_group(model[0], tp.prune_conv_out_channels, list(range(8))))
    second = score(graph.get_pruning_group(model[2], tp.prune_conv_out_channels, list(range(8))))
    assert first.min() > second.max()


def test_taylor_without_data_is_a_clear_error():
    with pytest.raises(EdgepruneError, match="needs a model family with a training loss and `data`"):
        prune_detector(_yolo(), PruneConfig(ratio=0.3, importance="taylor"), imgsz=64)


def test_taylor_on_a_model_without_loss_is_a_clear_error(tiny_data):
    pytest.importorskip("torchvision")
    det = load_model("torchvision:resnet18", nc=6)
    params = sum(p.numel() for p in det.module.parameters())
    with pytest.raises(EdgepruneError, match="needs a model family with a training loss"):
        prune_detector(det, PruneConfig(ratio=0.3, importance="taylor"), imgsz=64, data=tiny_data)
    assert sum(p.numel() for p in det.module.parameters()) == params


def test_unknown_criterion_lists_known_names():
    with pytest.raises(EdgepruneError, match="known: l1, l2, bn, taylor, lamp, random"):
        prune_detector(_yolo(), PruneConfig(ratio=0.3, importance="nope"), imgsz=64)


@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolo11n.yaml"])
def test_global_allocation(cfg, tmp_path):
    from ultralytics import YOLO

    det = _yolo(cfg)
    x = torch.rand(1, 3, 64, 64)
    shape = _out(det, x).shape
    options = {"importance": "lamp", "allocation": "global", "max_layer_ratio": 0.7}
    report = prune_detector(det, PruneConfig(ratio=0.6, round_to=8, **options), imgsz=64)
    assert report.config.allocation == "global" and report.after["params"] < 0.6 * report.before["params"]
    ratios = {lc.name: 1 - lc.after / lc.before for lc in report.layers if lc.after != lc.before}
    assert len({round(r, 3) for r in ratios.values()}) > 1, "global ranking gave every layer the same ratio"
    for lc in report.layers:
        if lc.after != lc.before:
            assert lc.after % 8 == 0
            # the limit holds up to rounding to 8 channels
            assert lc.after >= lc.before * (1 - 0.7) - 8, lc
    assert max(ratios.values()) <= 0.7 + 1e-9
    assert _out(det, x).shape == shape
    _stock(det)
    expected = _out(det, x)
    path = det.save(tmp_path / "pruned.pt")
    reloaded = YOLO(str(path)).model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(x)[0], expected, atol=1e-4)


def test_global_ratio_zero_changes_nothing():
    det = _yolo()
    x = torch.rand(1, 3, 64, 64)
    ref = _out(det, x)
    report = prune_detector(det, PruneConfig(ratio=0.0, allocation="global"), imgsz=64)
    assert report.before == report.after
    assert torch.equal(_out(det, x), ref)


def test_uniform_above_the_layer_limit_is_refused():
    with pytest.raises(EdgepruneError, match="`max_layer_ratio`"):
        prune_detector(_yolo(), PruneConfig(ratio=0.9), imgsz=64)


def test_cli_taylor_global_dry_run(tiny_data, capsys):
    from edgeprune.cli import main

    args = ["prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--ratio", "0.5", "--imgsz", "64", "--dry-run"]
    code = main(
        [
            *args,
            "--importance",
            "taylor",
            "--allocation",
            "global",
            "--max-layer-ratio",
            "0.8",
            "--data",
            str(tiny_data),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "ranked globally" in out and "taylor" in out
    assert main([*args, "--importance", "nope"]) == 1
    assert "known: l1, l2, bn, taylor, lamp, random" in capsys.readouterr().err
    assert main([*args, "--importance", "taylor"]) == 1
    assert "--data" in capsys.readouterr().err


def test_taylor_with_data_of_another_task_is_a_clear_error(tiny_data):
    det = load_model("yolov8n-seg.yaml", nc=6)
    with pytest.raises(EdgepruneError, match="taylor.*segment"):
        prune_detector(det, PruneConfig(ratio=0.3, importance="taylor"), imgsz=64, data=tiny_data)
    assert not any(p.grad is not None for p in det.module.parameters())


def test_recipe_carries_allocation(tmp_path):
    from edgeprune.recipe import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(
        "model: yolov8n.yaml\ntarget: cpu-ort-fp32\n"
        "prune: {ratio: 0.4, importance: taylor, allocation: global, max_layer_ratio: 0.7}\n"
    )
    spec = load_recipe(path)
    assert (spec.prune.importance, spec.prune.allocation, spec.prune.max_layer_ratio) == (
        "taylor",
        "global",
        0.7,
    )
    path.write_text("model: yolov8n.yaml\ntarget: cpu-ort-fp32\nprune: {ratio: 0.4, allocation: best}\n")
    with pytest.raises(EdgepruneError, match="allocation"):
        load_recipe(path)


def test_channel_groups_read_through_public_attributes_agree_with_torch_pruning():
    """The global plan reads channel groups from the pruner's public settings; where torch-pruning
    still has its private reader, both agree on every group (an upgrade that changes it fails here)."""
    import torch_pruning as tp

    from edgeprune.pruning.pruner import channel_groups

    det = load_model("yolov9c.yaml", nc=6)  # ADown halves its inputs: channels in groups of 2
    with det.prunable() as module:
        module.eval()
        pruner = tp.pruner.MetaPruner(
            module, det.example_input(det.trace_imgsz()), importance=tp.importance.MagnitudeImportance(p=2),
            ignored_layers=det.ignored_layers(), **det.graph_options(),
        )  # fmt: skip
        groups = list(
            pruner.DG.get_all_groups(
                ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
            )
        )
        ours = [channel_groups(pruner, g) for g in groups]
        assert max(ours) == 2 and min(ours) == 1
        if hasattr(pruner, "_get_channel_groups"):
            assert ours == [pruner._get_channel_groups(g) for g in groups]
