"""Accuracy by class and by object size: what a pruned model lost, beyond the average."""

from __future__ import annotations

import pytest

pytest.importorskip("faster_coco_eval")


def _labels(*boxes):
    """COCO labels of one image: (class index, x, y, w, h) each; ids as Ultralytics writes them."""
    return {
        "images": [{"id": 0}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 0,
                "category_id": c + 1,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
            for i, (c, x, y, w, h) in enumerate(boxes)
        ],
        "categories": [{"id": k} for k in (1, 2, 3)],
    }


def _found(*boxes):
    return [
        {"image_id": 0, "category_id": c + 1, "bbox": [x, y, w, h], "score": 0.9} for c, x, y, w, h in boxes
    ]


NAMES = {0: "square", 1: "circle", 2: "star"}
SMALL, MEDIUM, LARGE = (0, 10, 10, 20, 20), (1, 100, 100, 50, 50), (1, 300, 300, 120, 120)


def test_per_class_and_size_read_what_was_found_and_what_was_missed():
    from edgeprune.models.coco_breakdown import coco_breakdown

    got = coco_breakdown(_found(SMALL, MEDIUM), _labels(SMALL, MEDIUM, LARGE), NAMES)
    per_class = {c["class"]: c for c in got["per_class"]}
    assert per_class["square"]["map50_95"] == pytest.approx(1.0) and per_class["square"]["instances"] == 1
    # the circle class found its medium instance, missed its large one: half the recall
    assert 0.4 < per_class["circle"]["map50_95"] < 0.6 and per_class["circle"]["instances"] == 2
    assert per_class["star"]["map50_95"] is None and per_class["star"]["instances"] == 0  # nothing to score
    sizes = got["by_size"]
    assert sizes["small"] == {"map50_95": pytest.approx(1.0), "instances": 1}
    assert sizes["medium"] == {"map50_95": pytest.approx(1.0), "instances": 1}
    assert sizes["large"] == {"map50_95": 0.0, "instances": 1}  # COCO: area over 96² px


def test_nothing_found_scores_every_labelled_class_zero():
    from edgeprune.models.coco_breakdown import coco_breakdown

    got = coco_breakdown([], _labels(SMALL, MEDIUM), NAMES)
    assert [c["map50_95"] for c in got["per_class"]] == [0.0, 0.0, None]
    assert got["by_size"]["large"] == {"map50_95": None, "instances": 0} and got["coco_map50_95"] == 0.0


def test_breakdown_is_of_the_validators_own_predictions(demo_trained):
    """Same mAP as without the breakdown (the same validator run); the classes add up to COCO's
    total and the sizes to every labelled instance."""
    from edgeprune.models import load_model

    checkpoint, data = demo_trained
    det = load_model(checkpoint)
    plain = det.evaluate(data, imgsz=160)
    got = det.evaluate(data, imgsz=160, breakdown=True)
    assert got["map50_95"] == plain["map50_95"] and got["map50_95"] > 0.3
    assert [c["class"] for c in got["per_class"]] == list(det.module.names.values())
    scored = [c["map50_95"] for c in got["per_class"] if c["map50_95"] is not None]
    assert sum(scored) / len(scored) == pytest.approx(got["coco_map50_95"], abs=1e-6)
    labelled = sum(len(f.read_text().splitlines()) for f in (data.parent / "labels" / "val").glob("*.txt"))
    assert sum(c["instances"] for c in got["per_class"]) == labelled
    assert sum(s["instances"] for s in got["by_size"].values()) == labelled


def test_a_box_on_a_size_boundary_counts_where_coco_scores_it():
    from edgeprune.models.coco_breakdown import sizes_of

    assert sizes_of(31.0**2) == ["small"] and sizes_of(32.0**2) == ["small", "medium"]
    assert sizes_of(96.0**2) == ["medium", "large"] and sizes_of(200.0**2) == ["large"]
