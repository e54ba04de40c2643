import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.models import MODELS
from edgeprune.pruning import IMPORTANCE
from edgeprune.registry import Registry
from edgeprune.runtimes import RUNTIMES


def test_duplicate_name_raises():
    reg = Registry("thing")
    reg.register("a", object())
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a", object())


def test_unknown_name_lists_known():
    with pytest.raises(EdgepruneError, match="unknown importance criterion 'nope'.*l2"):
        IMPORTANCE.get("nope")


def test_decorator_registration_and_lazy_entries():
    reg = Registry("thing")

    @reg.register("f")
    def f():
        return 1

    reg.register("json_dumps", "json:dumps")
    assert reg.get("f") is f
    assert reg.get("json_dumps")([1]) == "[1]"
    assert reg.names() == ["f", "json_dumps"]


@pytest.mark.parametrize("name", RUNTIMES.names())
def test_every_runtime_is_importable_or_says_it_is_not_implemented(name):
    try:
        runtime = RUNTIMES.get(name)
    except EdgepruneError as e:
        assert "not implemented" in str(e) or "pip install" in str(e)
    else:
        assert runtime.name == name


def test_every_importance_builds():
    for name in IMPORTANCE.names():
        assert IMPORTANCE.get(name)() is not None


def test_model_adapters_in_order():
    assert MODELS.names()[-1] == "torch"  # the catch-all nn.Module adapter is tried last
