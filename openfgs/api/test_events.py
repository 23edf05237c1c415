"""Test events: CreateEvent, ListEvents, ShowEvent, UpdateEvent and DeleteEvent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from openfgs.api.deps import ProjectDep, ServicesDep
from openfgs.api.errors import ERROR_RESPONSES
from openfgs.models import Function, TestEvent
from openfgs.schemas import CreateEventBody, EventIdOut, EventListOut, EventOut, UpdateEventBody
from openfgs.test_events import TestEventService

router = APIRouter(
    prefix="/v2/{project_id}/fgs/functions/{function_urn}", responses=ERROR_RESPONSES
)


async def path_function(
    services: ServicesDep, project_id: ProjectDep, function_urn: str
) -> Function:
    # Any qualifier names the function: its events are shared by its versions and aliases.
    return await services.registry.resolve(project_id, function_urn, missing_code="FSS.1051")


async def test_event_service(services: ServicesDep) -> TestEventService:
    # An event is bounded as a sync invoke's body is: it is meant to be sent as one.
    settings = services.settings
    return TestEventService(services.store, services.registry, settings.max_sync_body_bytes)


FunctionDep = Annotated[Function, Depends(path_function)]
EventsDep = Annotated[TestEventService, Depends(test_event_service)]


def describe_event(event: TestEvent, *, content: bool = False) -> dict[str, Any]:
    described: dict[str, Any] = {
        "id": event.id,
        "name": event.name,
        "last_modified": event.last_modified // 1000,
    }
    if content:
        described["content"] = event.content
    return described


@router.post("/events", response_model=EventIdOut, summary="CreateEvent")
async def create_event(
    body: CreateEventBody, function: FunctionDep, events: EventsDep
) -> dict[str, Any]:
    event = await events.create(function, body.name, body.content)
    return {"id": event.id, "name": event.name}


@router.get("/events", response_model=EventListOut, summary="ListEvents")
async def list_events(function: FunctionDep, events: EventsDep) -> dict[str, Any]:
    found = await events.list_events(function)
    return {
        "events": [describe_event(event) for event in found],
        "count": len(found),
        "next_marker": len(found),
    }


@router.get("/events/{event_id}", response_model=EventOut, summary="ShowEvent")
async def show_event(event_id: str, function: FunctionDep, events: EventsDep) -> dict[str, Any]:
    return describe_event(await events.get(function, event_id), content=True)


@router.put("/events/{event_id}", response_model=EventIdOut, summary="UpdateEvent")
async def update_event(
    event_id: str, body: UpdateEventBody, function: FunctionDep, events: EventsDep
) -> dict[str, Any]:
    event = await events.update(function, event_id, body.content, body.name)
    return {"id": event.id, "name": event.name}


@router.delete(
    "/events/{event_id}", status_code=204, response_class=Response, summary="DeleteEvent"
)
async def delete_event(event_id: str, function: FunctionDep, events: EventsDep) -> Response:
    await events.delete(function, event_id)
    return Response(status_code=204)
