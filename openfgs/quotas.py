"""ListQuotas: the limits openfgs enforces, with a project's usage where it is cheap to count.

FunctionGraph's own quota types come first (``fgs_func_num``, ``fgs_func_code_size`` in MB,
``fgs_on_demand_instance_limit``); the per-function limits FunctionGraph documents but does not
list as quotas follow under names of the same form. A per-function limit has no project-wide
usage: its ``used`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from openfgs.functions import ALIAS_LIMIT, MAX_INSTANCES, VERSION_LIMIT, FunctionRegistry
from openfgs.tags import MAX_TAGS
from openfgs.triggers import TRIGGERS_PER_QUALIFIER

MIB = 1024 * 1024
DEPENDENCIES_PER_FUNCTION = 20


@dataclass(frozen=True)
class Quota:
    type: str
    quota: int
    used: int = 0
    unit: str | None = None


async def list_quotas(registry: FunctionRegistry, project_id: str) -> list[Quota]:
    """The quotas of ``project_id``; the project-wide ones with what it uses of them."""
    code_bytes = await registry.total_code_size(project_id)
    return [
        Quota("fgs_func_num", registry.function_quota, await registry.count(project_id)),
        Quota("fgs_func_code_size", registry.code_quota_bytes // MIB, -(-code_bytes // MIB), "MB"),
        Quota("fgs_on_demand_instance_limit", MAX_INSTANCES),
        Quota("fgs_func_version_num", VERSION_LIMIT),
        Quota("fgs_func_alias_num", ALIAS_LIMIT),
        Quota("fgs_func_dependency_num", DEPENDENCIES_PER_FUNCTION),
        Quota("fgs_func_trigger_num", TRIGGERS_PER_QUALIFIER),
        Quota("fgs_func_tag_num", MAX_TAGS),
    ]
