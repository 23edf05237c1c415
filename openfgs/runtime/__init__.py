"""Function instances: child processes that run user handlers with FunctionGraph's contract."""

from openfgs.runtime.pool import InstancePool
from openfgs.runtime.types import CodeLoader, FunctionSpec, RunResult

__all__ = ["CodeLoader", "FunctionSpec", "InstancePool", "RunResult"]
