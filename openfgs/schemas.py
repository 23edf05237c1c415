"""FunctionGraph's wire shapes: request bodies and response bodies, as pydantic models.

The HTTP layer declares routes with them (so the OpenAPI document is true) and the domain takes
the request models as its input; field names are FunctionGraph's own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MEMORY_SIZES = (128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096)


class _Input(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Output):
    error_code: str = Field(examples=["FSS.0404"])
    error_msg: str = Field(examples=["can not find function"])


class FuncCode(_Input):
    file: str | None = Field(default=None, description="base64 of index.py or of a zip archive")
    link: str | None = None


class StrategyConfig(_Input):
    concurrency: int | None = Field(default=None, ge=-1, le=1000)
    concurrent_num: int | None = Field(default=None, ge=1, le=1000)


class CreateFunctionBody(_Input):
    func_name: str = Field(min_length=1, max_length=60)
    package: str = Field(min_length=1, max_length=64)
    runtime: str = Field(min_length=1, max_length=64)
    timeout: int = Field(ge=3, le=259200)
    handler: str = Field(min_length=3, max_length=128)
    memory_size: int
    code_type: str | None = None
    code_url: str | None = None
    code_filename: str | None = None
    func_code: FuncCode | None = None
    user_data: str | None = None
    encrypted_user_data: str | None = None
    description: str | None = Field(default=None, max_length=512)
    type: str | None = None
    initializer_handler: str | None = None
    initializer_timeout: int | None = None
    strategy_config: StrategyConfig | None = None
    # FunctionGraph's string field: openfgs reads a JSON object or a JSON array of {key, value}.
    tags: str | None = None
    depend_version_list: list[str] | None = None


class UpdateFunctionConfigBody(_Input):
    func_name: str = Field(min_length=1, max_length=60)
    runtime: str = Field(min_length=1, max_length=64)
    timeout: int = Field(ge=3, le=259200)
    handler: str = Field(min_length=3, max_length=128)
    memory_size: int
    user_data: str | None = None
    encrypted_user_data: str | None = None
    description: str | None = Field(default=None, max_length=512)
    initializer_handler: str | None = None
    initializer_timeout: int | None = None
    strategy_config: StrategyConfig | None = None


class UpdateFunctionCodeBody(_Input):
    code_type: str
    code_url: str | None = None
    code_filename: str | None = None
    func_code: FuncCode | None = None
    depend_version_list: list[str] | None = None


class StrategyConfigOut(_Output):
    concurrency: int
    concurrent_num: int


class DependencyOut(_Output):
    """A dependency version (FunctionGraph's ``Dependency``): ``id`` is the version id."""

    id: str
    dep_id: str
    owner: str
    link: str
    runtime: str
    etag: str
    size: int
    name: str
    description: str
    file_name: str
    version: int
    last_modified: int = Field(description="epoch seconds")


class FunctionOut(_Output):
    """FunctionGraph's function model (config responses)."""

    func_id: str
    func_urn: str
    func_name: str
    domain_id: str
    namespace: str
    project_name: str
    package: str
    runtime: str
    timeout: int
    handler: str
    memory_size: int
    cpu: int
    code_type: str
    code_url: str
    code_filename: str
    code_size: int
    user_data: str
    encrypted_user_data: str
    digest: str
    version: str
    image_name: str
    xrole: str
    app_xrole: str
    description: str
    last_modified: str
    initializer_handler: str
    initializer_timeout: int
    type: str
    strategy_config: StrategyConfigOut
    depend_list: list[str] = Field(default_factory=list)
    depend_version_list: list[str] = Field(default_factory=list)
    dependencies: list[DependencyOut] = Field(default_factory=list)


class FuncCodeOut(_Output):
    file: str
    link: str


class FunctionCodeOut(_Output):
    func_urn: str
    func_name: str
    domain_id: str
    runtime: str
    code_type: str
    code_url: str
    code_filename: str
    code_size: int
    digest: str
    last_modified: str
    func_code: FuncCodeOut
    depend_list: list[str]
    depend_version_list: list[str]
    strategy_config: StrategyConfigOut
    dependencies: list[DependencyOut] = Field(default_factory=list)


class FunctionListOut(_Output):
    functions: list[FunctionOut]
    next_marker: int
    count: int


class AsyncInvokeOut(_Output):
    request_id: str


class SyncInvokeOut(_Output):
    request_id: str
    result: str
    log: str
    status: int


class AsyncInvocationOut(_Output):
    request_id: str
    status: Literal["WAIT", "RUNNING", "SUCCESS", "FAIL", "DISCARD"]
    error_code: int
    error_message: str
    start_time: str = Field(examples=["2019-10-25T15:37:27"])
    end_time: str = Field(examples=["2019-10-25T15:37:27"])


class AsyncInvocationListOut(_Output):
    invocations: list[AsyncInvocationOut]
    count: int
    next_marker: int


class HealthOut(_Output):
    status: Literal["ok"]
    database: Literal["ok"]
    # How function instances are kept apart (docs/runtime.md): "refused" runs no function code.
    isolation: Literal["strict", "relaxed", "refused"]
    isolation_problems: list[str]


# IAM's token request: {"auth": {"identity": {...}, "scope": {"project": {"id": ...}}}}
class _Key(_Input):
    key: str


class HwAkSk(_Input):
    access: _Key
    secret: _Key


class _User(_Input):
    name: str
    password: str


class PasswordIdentity(_Input):
    user: _User


class Identity(_Input):
    methods: list[str] = Field(min_length=1)
    hw_ak_sk: HwAkSk | None = None
    password: PasswordIdentity | None = None


class ProjectRef(_Input):
    id: str | None = None
    name: str | None = None


class Scope(_Input):
    project: ProjectRef | None = None


class Auth(_Input):
    identity: Identity
    scope: Scope | None = None


class TokenRequest(_Input):
    auth: Auth


class TokenProject(_Output):
    id: str
    name: str


class TokenUser(_Output):
    id: str
    name: str


class TokenBody(_Output):
    methods: list[str]
    issued_at: str
    expires_at: str
    project: TokenProject
    user: TokenUser


class TokenOut(_Output):
    token: TokenBody


class FuncDestinationConfig(_Input):
    destination: str = Field(min_length=1, max_length=32)
    param: str = Field(max_length=2048)


class DestinationConfig(_Input):
    on_success: FuncDestinationConfig | None = None
    on_failure: FuncDestinationConfig | None = None


class AsyncConfigBody(_Input):
    max_async_event_age_in_seconds: int | None = Field(default=None, ge=1, le=86400)
    max_async_retry_attempts: int | None = Field(default=None, ge=0, le=3)
    destination_config: DestinationConfig | None = None
    enable_async_status_log: bool | None = None
    log_group_id: str | None = None
    log_stream_id: str | None = None
    log_group_name: str | None = None
    log_stream_name: str | None = None


class FuncDestinationOut(_Output):
    destination: str
    param: str


class DestinationConfigOut(_Output):
    on_success: FuncDestinationOut | None = None
    on_failure: FuncDestinationOut | None = None


class AsyncConfigOut(_Output):
    func_urn: str
    max_async_event_age_in_seconds: int
    max_async_retry_attempts: int
    destination_config: DestinationConfigOut
    created_time: str
    last_modified: str
    enable_async_status_log: bool


class PageInfo(_Output):
    next_marker: int
    previous_marker: int
    current_count: int


class AsyncConfigListOut(_Output):
    async_invoke_configs: list[AsyncConfigOut]
    count: int
    page_info: PageInfo


class CancelBody(_Input):
    request_id: str = Field(min_length=1, max_length=64)
    type: Literal["force", "recursive"] | None = None


class StatusLogDetailOut(_Output):
    group_name: str
    group_id: str
    stream_id: str
    stream_name: str


class AttemptOut(_Output):
    attempt: int
    worker_id: str
    start_time: str
    end_time: str
    outcome: str
    error_code: int
    error_message: str


class InvocationDetailOut(_Output):
    request_id: str
    func_urn: str
    status: Literal["WAIT", "RUNNING", "SUCCESS", "FAIL", "DISCARD"]
    error_code: int
    error_message: str
    start_time: str
    end_time: str
    attempt: int
    max_attempts: int
    rerun_of: str
    attempts: list[AttemptOut]


class RerunBody(_Input):
    request_id: str | None = Field(default=None, max_length=64)
    query_begin_time: str | None = None
    query_end_time: str | None = None
    status: Literal["FAIL", "DISCARD"] | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class RerunItemOut(_Output):
    request_id: str
    rerun_of: str


class RerunOut(_Output):
    reruns: list[RerunItemOut]
    count: int


class StatsOut(_Output):
    """Records of one function by status; ``accepted`` is their sum (records not yet purged)."""

    accepted: int
    WAIT: int
    RUNNING: int
    SUCCESS: int
    FAIL: int
    DISCARD: int


# -- versions and aliases ------------------------------------------------------------------


class CreateVersionBody(_Input):
    digest: str | None = Field(default=None, max_length=256)
    version: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=1024)


class FunctionVersionOut(FunctionOut):
    """A published version: the function model, its description and its async config."""

    version_description: str
    function_async_config: AsyncConfigOut | None = None


class FunctionVersionListOut(_Output):
    versions: list[FunctionOut]
    next_marker: int
    count: int


class AliasBody(_Input):
    """CreateVersionAlias (``name`` required there) and UpdateVersionAlias."""

    name: str | None = Field(default=None, max_length=64)
    version: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=1024)
    additional_version_weights: dict[str, int] | None = None
    additional_version_strategy: dict[str, object] | None = None


class AliasOut(_Output):
    name: str
    version: str
    description: str
    last_modified: str
    alias_urn: str
    additional_version_weights: dict[str, int]


# -- triggers --------------------------------------------------------------------------------


class CreateTriggerBody(_Input):
    trigger_type_code: str = Field(min_length=1, max_length=32)
    trigger_status: str | None = Field(default=None, max_length=16)
    event_type_code: str | None = Field(default=None, max_length=128)
    event_data: dict[str, object]


class UpdateTriggerBody(_Input):
    trigger_status: str | None = Field(default=None, max_length=16)
    # An array of pull settings (the SDK's model) or the whole object (Terraform's).
    event_data: list[object] | dict[str, object] | None = None


class TriggerOut(_Output):
    trigger_id: str
    trigger_type_code: str
    trigger_status: str
    event_type_code: str
    event_data: dict[str, object]
    last_updated_time: str
    created_time: str


class TriggerWithUrnOut(TriggerOut):
    func_urn: str


class TriggerListOut(_Output):
    triggers: list[TriggerWithUrnOut]
    next_marker: int
    count: int


# -- dependencies ----------------------------------------------------------------------------


class CreateDependencyBody(_Input):
    """``CreateDependencyVersion``; lengths and values are checked by openfgs.dependencies."""

    depend_type: str = Field(max_length=64, examples=["zip"])
    depend_file: str | None = Field(default=None, description="base64 of the zip")
    depend_link: str | None = None
    runtime: str = Field(max_length=1024, examples=["Python3.9"])
    name: str = Field(max_length=1024)
    description: str | None = Field(default=None, max_length=4096)


class DependencyVersionOut(DependencyOut):
    """An item of ``ListDependencyVersion``."""

    is_shared: bool = False


class DependencyVersionDetailOut(DependencyVersionOut):
    """``ShowDependencyVersion``: a version plus ``download_link`` (empty: not served)."""

    download_link: str


class DependencyItemOut(_Output):
    """An item of ``ListDependencies``: ``id`` is the dependency id, the rest its latest
    version's."""

    id: str
    owner: str
    link: str
    runtime: str
    etag: str
    size: int
    name: str
    description: str
    file_name: str
    version: int
    last_modified: int


class DependencyListOut(_Output):
    dependencies: list[DependencyItemOut]
    next_marker: int
    count: int


# -- test events ------------------------------------------------------------------------------


class CreateEventBody(_Input):
    name: str = Field(description="1-25 letters, digits, _ and -; a letter first")
    content: str = Field(description="base64 of the event's JSON")


class UpdateEventBody(_Input):
    content: str = Field(description="base64 of the event's JSON")
    name: str | None = Field(default=None, description="a new name (openfgs: optional)")


class EventIdOut(_Output):
    id: str
    name: str


class EventSummaryOut(_Output):
    id: str
    name: str
    last_modified: int = Field(description="seconds since the epoch", examples=[1597374286])


class EventOut(EventSummaryOut):
    content: str


class EventListOut(_Output):
    events: list[EventSummaryOut]
    count: int
    next_marker: int


# -- max instances, tags and quotas ----------------------------------------------------------


class MaxInstanceBody(_Input):
    max_instance_num: int = Field(description="-1 (the default), 0 (disabled) or 1 to 1000")


class KvItem(_Input):
    key: str = Field(max_length=1024)
    value: str | None = Field(default=None, max_length=1024)


class TagsBody(_Input):
    """CreateTags and DeleteTags; ``sys_tags`` are accepted and not stored."""

    action: str | None = Field(default=None, max_length=16)
    tags: list[KvItem] = Field(default_factory=list, max_length=100)
    sys_tags: list[KvItem] | None = Field(default=None, max_length=100)


class KvItemOut(_Output):
    key: str
    value: str


class FunctionTagsOut(_Output):
    tags: list[KvItemOut]
    sys_tags: list[KvItemOut]


class TagItemOut(_Output):
    key: str
    values: list[str]


class ProjectTagsOut(_Output):
    tags: list[TagItemOut]
    sys_tags: list[TagItemOut]


class QuotaOut(_Output):
    type: str
    quota: int
    used: int
    unit: str | None = None  # "MB" for fgs_func_code_size, absent elsewhere


class QuotaListOut(_Output):
    resources: list[QuotaOut]


class QuotasOut(_Output):
    quotas: QuotaListOut


class DependencyVersionListOut(_Output):
    dependencies: list[DependencyVersionOut]
    next_marker: int
    count: int
