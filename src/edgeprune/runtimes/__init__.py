"""Runtime adapters, one module per runtime, registered by name.

Registering lazily (a "module:Class" string) keeps ``import edgeprune.runtimes`` free of any
runtime library; the adapter module imports its backend only when used.
"""

from __future__ import annotations

from edgeprune.registry import Registry
from edgeprune.runtimes.base import Runtime

RUNTIMES: Registry[type[Runtime]] = Registry("runtime")
RUNTIMES.register("onnxruntime", "edgeprune.runtimes.onnxruntime:OnnxRuntime")
RUNTIMES.register("openvino", "edgeprune.runtimes.openvino:OpenVinoRuntime")
RUNTIMES.register("tflite", "edgeprune.runtimes.tflite:TfliteRuntime")
RUNTIMES.register("tensorrt", "edgeprune.runtimes.tensorrt:TensorRtRuntime")


def get_runtime(name: str) -> Runtime:
    """Instantiate the adapter registered as ``name``."""
    return RUNTIMES.get(name)()


__all__ = ["RUNTIMES", "Runtime", "get_runtime"]
