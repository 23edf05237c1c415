"""Every operation of FunctionGraph's API (the official SDK's ``FunctionGraphClient``) and what
openfgs does with it: one table, from which the answer to an operation openfgs has no route
for and the operations table of docs/api.md are both made.

An operation without a route answers 404 ``FSS.0404`` saying it is not implemented (never the
405 a path shape shared with another route would give): :func:`install_not_implemented` adds
a route for each such operation, ahead of the others, so a static segment such as
``reservedinstanceconfigs`` is never taken for a function URN. ``tests/api/test_operations.py``
holds the table equal to the SDK's operations and to docs/api.md, and walks every operation.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Match

from openfgs.api.deps import authenticated
from openfgs.errors import NotFound

PREFIX = "/v2/{project_id}"
_PARAMETER = re.compile(r"\{(\w+)\}")


class Support(enum.Enum):
    IMPLEMENTED = "implemented"
    PLANNED = "planned"
    NOT_APPLICABLE = "not applicable"


IMPLEMENTED = Support.IMPLEMENTED
PLANNED = Support.PLANNED
NOT_APPLICABLE = Support.NOT_APPLICABLE

# Why an operation is planned or not applicable, as docs/api.md and the 404 say it.
RESERVED = "reserved instances are planned (instances are kept warm on demand)"
PACKAGES = "function export and import are planned"
TAG_FILTER = "filtering resources by tag is planned"
FLOWS = "function flows (workflows) are a Huawei Cloud orchestration service of their own"
APPLICATIONS = "applications and their templates are deployed by Huawei Cloud services"
TEMPLATES = "function templates are Huawei Cloud console content"
VPC = "VPC endpoints need Huawei Cloud VPC"
LTS = "logs go to Huawei Cloud LTS; openfgs keeps logs itself"
APM = "tracing needs Huawei Cloud APM"
BRIDGE = "service bridge functions are a Huawei Cloud integration"
SNAPSHOTS = "snapshot start is a feature of Huawei Cloud's Java runtime"
FAVOURITES = "favourites are Huawei Cloud console state"


@dataclass(frozen=True)
class Operation:
    """One SDK operation: its method name, HTTP method and path after ``/v2/{project_id}``."""

    name: str
    method: str
    path: str
    support: Support
    reason: str = ""

    @property
    def title(self) -> str:
        """The operation's name as FunctionGraph's documentation writes it (CreateTags)."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def full_path(self) -> str:
        return PREFIX + self.path


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "async_invoke_function",
        "POST",
        "/fgs/functions/{function_urn}/invocations-async",
        IMPLEMENTED,
    ),
    Operation(
        "batch_delete_function_triggers",
        "DELETE",
        "/fgs/triggers/{function_urn}",
        IMPLEMENTED,
    ),
    Operation("batch_delete_workflows", "DELETE", "/fgs/workflows", NOT_APPLICABLE, FLOWS),
    Operation(
        "cancel_async_invocation", "POST", "/fgs/functions/{function_urn}/cancel", IMPLEMENTED
    ),
    Operation(
        "create_callback_workflow",
        "POST",
        "/fgs/workflows/{workflow_id}/callback",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation("create_dependency_version", "POST", "/fgs/dependencies/version", IMPLEMENTED),
    Operation("create_event", "POST", "/fgs/functions/{function_urn}/events", IMPLEMENTED),
    Operation("create_function", "POST", "/fgs/functions", IMPLEMENTED),
    Operation("create_function_app", "POST", "/fgs/applications", NOT_APPLICABLE, APPLICATIONS),
    Operation("create_function_trigger", "POST", "/fgs/triggers/{function_urn}", IMPLEMENTED),
    Operation(
        "create_function_version", "POST", "/fgs/functions/{function_urn}/versions", IMPLEMENTED
    ),
    Operation("create_tags", "POST", "/{resource_type}/{resource_id}/tags/create", IMPLEMENTED),
    Operation("create_version_alias", "POST", "/fgs/functions/{function_urn}/aliases", IMPLEMENTED),
    Operation("create_vpc_endpoint", "POST", "/fgs/vpc-endpoint", NOT_APPLICABLE, VPC),
    Operation("create_workflow", "POST", "/fgs/workflows", NOT_APPLICABLE, FLOWS),
    Operation(
        "delete_dependency_version",
        "DELETE",
        "/fgs/dependencies/{depend_id}/version/{version}",
        IMPLEMENTED,
    ),
    Operation(
        "delete_event",
        "DELETE",
        "/fgs/functions/{function_urn}/events/{event_id}",
        IMPLEMENTED,
    ),
    Operation("delete_function", "DELETE", "/fgs/functions/{function_urn}", IMPLEMENTED),
    Operation(
        "delete_function_app", "DELETE", "/fgs/applications/{id}", NOT_APPLICABLE, APPLICATIONS
    ),
    Operation(
        "delete_function_async_invoke_config",
        "DELETE",
        "/fgs/functions/{function_urn}/async-invoke-config",
        IMPLEMENTED,
    ),
    Operation(
        "delete_function_trigger",
        "DELETE",
        "/fgs/triggers/{function_urn}/{trigger_type_code}/{trigger_id}",
        IMPLEMENTED,
    ),
    Operation("delete_tags", "DELETE", "/{resource_type}/{resource_id}/tags/delete", IMPLEMENTED),
    Operation(
        "delete_version_alias",
        "DELETE",
        "/fgs/functions/{function_urn}/aliases/{alias_name}",
        IMPLEMENTED,
    ),
    Operation(
        "delete_vpc_endpoint",
        "DELETE",
        "/fgs/vpc-endpoint/{vpc_id}/{subnet_id}",
        NOT_APPLICABLE,
        VPC,
    ),
    Operation(
        "enable_async_status_log", "POST", "/fgs/functions/enable-async-status-logs", IMPLEMENTED
    ),
    Operation("enable_lts_logs", "POST", "/fgs/functions/enable-lts-logs", NOT_APPLICABLE, LTS),
    Operation("export_function", "GET", "/fgs/functions/{function_urn}/export", PLANNED, PACKAGES),
    Operation("import_function", "POST", "/fgs/functions/import", PLANNED, PACKAGES),
    Operation("invoke_function", "POST", "/fgs/functions/{function_urn}/invocations", IMPLEMENTED),
    Operation(
        "list_active_async_invocations",
        "GET",
        "/fgs/functions/{function_urn}/active-async-invocations",
        IMPLEMENTED,
    ),
    Operation(
        "list_app_templates", "GET", "/fgs/application/templates", NOT_APPLICABLE, APPLICATIONS
    ),
    Operation(
        "list_async_invocations",
        "GET",
        "/fgs/functions/{function_urn}/async-invocations",
        IMPLEMENTED,
    ),
    Operation(
        "list_bridge_functions",
        "GET",
        "/fgs/functions/{function_urn}/servicebridge/relation",
        NOT_APPLICABLE,
        BRIDGE,
    ),
    Operation("list_bridge_versions", "GET", "/fgs/servicebridge/version", NOT_APPLICABLE, BRIDGE),
    Operation("list_dependencies", "GET", "/fgs/dependencies", IMPLEMENTED),
    Operation(
        "list_dependency_version", "GET", "/fgs/dependencies/{depend_id}/version", IMPLEMENTED
    ),
    Operation("list_events", "GET", "/fgs/functions/{function_urn}/events", IMPLEMENTED),
    Operation(
        "list_function_applications", "GET", "/fgs/applications", NOT_APPLICABLE, APPLICATIONS
    ),
    Operation("list_function_as_metric", "GET", "/fgs/function/report", IMPLEMENTED),
    Operation(
        "list_function_async_invoke_config",
        "GET",
        "/fgs/functions/{function_urn}/async-invoke-configs",
        IMPLEMENTED,
    ),
    Operation(
        "list_function_reserved_instances",
        "GET",
        "/fgs/functions/reservedinstances",
        PLANNED,
        RESERVED,
    ),
    Operation(
        "list_function_statistics",
        "GET",
        "/fgs/functions/{func_urn}/statistics/{period}",
        IMPLEMENTED,
    ),
    Operation("list_function_tags", "GET", "/{resource_type}/{resource_id}/tags", IMPLEMENTED),
    Operation("list_function_template", "GET", "/fgs/templates", NOT_APPLICABLE, TEMPLATES),
    Operation("list_function_triggers", "GET", "/fgs/triggers/{function_urn}", IMPLEMENTED),
    Operation(
        "list_function_versions", "GET", "/fgs/functions/{function_urn}/versions", IMPLEMENTED
    ),
    Operation("list_functions", "GET", "/fgs/functions", IMPLEMENTED),
    Operation("list_quotas", "GET", "/fgs/quotas", IMPLEMENTED),
    Operation(
        "list_reserved_instance_configs",
        "GET",
        "/fgs/functions/reservedinstanceconfigs",
        PLANNED,
        RESERVED,
    ),
    Operation("list_statistics", "GET", "/fgs/functions/statistics", IMPLEMENTED),
    Operation("list_version_aliases", "GET", "/fgs/functions/{function_urn}/aliases", IMPLEMENTED),
    Operation("list_workflow", "GET", "/fgs/workflows", NOT_APPLICABLE, FLOWS),
    Operation(
        "list_workflow_executions",
        "GET",
        "/fgs/workflows/{workflow_id}/executions",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation(
        "retry_work_flow",
        "POST",
        "/fgs/workflows/{workflow_id}/executions/{execution_id}/retry",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation(
        "show_app_template", "GET", "/fgs/application/templates/{id}", NOT_APPLICABLE, APPLICATIONS
    ),
    Operation(
        "show_dependency_version",
        "GET",
        "/fgs/dependencies/{depend_id}/version/{version}",
        IMPLEMENTED,
    ),
    Operation("show_event", "GET", "/fgs/functions/{function_urn}/events/{event_id}", IMPLEMENTED),
    Operation(
        "show_func_reserved_instance_metrics",
        "GET",
        "/fgs/functions/{func_urn}/instancereports",
        PLANNED,
        RESERVED,
    ),
    Operation(
        "show_func_snapshot_state",
        "GET",
        "/fgs/functions/{function_urn}/snapshots/{action}",
        NOT_APPLICABLE,
        SNAPSHOTS,
    ),
    Operation("show_function_app", "GET", "/fgs/applications/{id}", NOT_APPLICABLE, APPLICATIONS),
    Operation(
        "show_function_async_invoke_config",
        "GET",
        "/fgs/functions/{function_urn}/async-invoke-config",
        IMPLEMENTED,
    ),
    Operation("show_function_code", "GET", "/fgs/functions/{function_urn}/code", IMPLEMENTED),
    Operation("show_function_config", "GET", "/fgs/functions/{function_urn}/config", IMPLEMENTED),
    Operation(
        "show_function_metrics",
        "GET",
        "/fgs/functions/{func_urn}/slareports/{period}",
        IMPLEMENTED,
    ),
    Operation(
        "show_function_template", "GET", "/fgs/templates/{template_id}", NOT_APPLICABLE, TEMPLATES
    ),
    Operation(
        "show_function_trigger",
        "GET",
        "/fgs/triggers/{function_urn}/{trigger_type_code}/{trigger_id}",
        IMPLEMENTED,
    ),
    Operation(
        "show_lts_log_details",
        "GET",
        "/fgs/functions/{function_urn}/lts-log-detail",
        NOT_APPLICABLE,
        LTS,
    ),
    Operation(
        "show_project_async_status_log_info",
        "GET",
        "/fgs/functions/async-status-log-detail",
        IMPLEMENTED,
    ),
    Operation("show_project_tags_list", "GET", "/{resource_type}/tags", IMPLEMENTED),
    Operation(
        "show_res_instance_info",
        "POST",
        "/{resource_type}/resource-instances/{action}",
        PLANNED,
        TAG_FILTER,
    ),
    Operation("show_tenant_metric", "GET", "/fgs/workflow-statistic", NOT_APPLICABLE, FLOWS),
    Operation("show_tracing", "GET", "/fgs/functions/{function_urn}/tracing", NOT_APPLICABLE, APM),
    Operation(
        "show_version_alias",
        "GET",
        "/fgs/functions/{function_urn}/aliases/{alias_name}",
        IMPLEMENTED,
    ),
    Operation("show_work_flow", "GET", "/fgs/workflows/{workflow_id}", NOT_APPLICABLE, FLOWS),
    Operation(
        "show_work_flow_metric",
        "GET",
        "/fgs/workflow-statistic/{workflow_urn}",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation(
        "show_workflow_execution",
        "GET",
        "/fgs/workflows/{workflow_id}/executions/{execution_id}",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation(
        "show_workflow_execution_for_page",
        "GET",
        "/fgs/workflows/{workflow_id}/executions-history",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation(
        "start_sync_workflow_execution",
        "POST",
        "/fgs/workflows/{workflow_id}/sync-executions",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation(
        "start_workflow_execution",
        "POST",
        "/fgs/workflows/{workflow_id}/executions",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation(
        "stop_work_flow",
        "POST",
        "/fgs/workflows/{workflow_id}/executions/{execution_id}/terminate",
        NOT_APPLICABLE,
        FLOWS,
    ),
    Operation(
        "update_event",
        "PUT",
        "/fgs/functions/{function_urn}/events/{event_id}",
        IMPLEMENTED,
    ),
    Operation(
        "update_func_snapshot",
        "POST",
        "/fgs/functions/{function_urn}/snapshots/{action}",
        NOT_APPLICABLE,
        SNAPSHOTS,
    ),
    Operation(
        "update_function_async_invoke_config",
        "PUT",
        "/fgs/functions/{function_urn}/async-invoke-config",
        IMPLEMENTED,
    ),
    Operation("update_function_code", "PUT", "/fgs/functions/{function_urn}/code", IMPLEMENTED),
    Operation(
        "update_function_collect_state",
        "PUT",
        "/fgs/functions/{func_urn}/collect/{state}",
        NOT_APPLICABLE,
        FAVOURITES,
    ),
    Operation("update_function_config", "PUT", "/fgs/functions/{function_urn}/config", IMPLEMENTED),
    Operation(
        "update_function_max_instance_config",
        "PUT",
        "/fgs/functions/{function_urn}/config-max-instance",
        IMPLEMENTED,
    ),
    Operation(
        "update_function_reserved_instances_count",
        "PUT",
        "/fgs/functions/{function_urn}/reservedinstances",
        PLANNED,
        RESERVED,
    ),
    Operation(
        "update_tracing", "PUT", "/fgs/functions/{function_urn}/tracing", NOT_APPLICABLE, APM
    ),
    Operation(
        "update_trigger",
        "PUT",
        "/fgs/triggers/{function_urn}/{trigger_type_code}/{trigger_id}",
        IMPLEMENTED,
    ),
    Operation(
        "update_version_alias",
        "PUT",
        "/fgs/functions/{function_urn}/aliases/{alias_name}",
        IMPLEMENTED,
    ),
    Operation("update_work_flow", "PUT", "/fgs/workflows/{workflow_id}", NOT_APPLICABLE, FLOWS),
)


def sample_path(template: str) -> str:
    """A concrete path of ``template``: ``functions`` for the resource type of the tag
    operations, the parameter's own name for every other parameter."""
    return _PARAMETER.sub(lambda m: "functions" if m[1] == "resource_type" else m[1], template)


def routed(app: FastAPI, method: str, path: str) -> bool:
    """Whether a route of ``app`` answers ``method`` on ``path``."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    # A router included in the app is one route of it that matches as its routes do.
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def not_implemented(operation: Operation) -> NotFound:
    reason = f": {operation.reason}" if operation.reason else ""
    return NotFound(f"{operation.title} is not implemented by openfgs{reason}")


def _answer_not_implemented(operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        authenticated(request.scope, request.path_params["project_id"])
        raise not_implemented(operation)

    return endpoint


def install_not_implemented(app: FastAPI) -> list[Operation]:
    """Route each operation no route of ``app`` answers to a 404 naming it, ahead of every
    other route; the operations so routed."""
    missing = [op for op in OPERATIONS if not routed(app, op.method, sample_path(op.full_path))]
    for operation in missing:
        app.add_api_route(
            operation.full_path,
            _answer_not_implemented(operation),
            methods=[operation.method],
            name=f"not_implemented_{operation.name}",
            include_in_schema=False,
        )
        app.router.routes.insert(0, app.router.routes.pop())
    return missing


def operations_table() -> str:
    """The operations table of docs/api.md."""
    lines = [
        "| Operation | Method and path | In openfgs |",
        "|---|---|---|",
    ]
    for op in sorted(OPERATIONS, key=lambda op: op.title):
        status = op.support.value + (f": {op.reason}" if op.reason else "")
        lines.append(f"| {op.title} | `{op.method} {op.path}` | {status} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(operations_table(), end="")
