"""The one exception hierarchy of openfgs.

API-facing errors carry their HTTP status and FunctionGraph error code as class attributes, so
the HTTP layer renders every one of them through a single function.
"""

from __future__ import annotations


class OpenFgsError(Exception):
    """Root of every error openfgs raises on purpose."""


class ConfigError(OpenFgsError):
    """A setting, credential or profile openfgs cannot run with; the CLI prints it, exits 2."""


class StoreError(OpenFgsError):
    """A storage backend failed; driver errors are wrapped into this at the store boundary."""


class ConflictError(StoreError):
    """A row that must be unique already exists."""


class ApiError(OpenFgsError):
    """An error a client can see: an HTTP status plus a FunctionGraph error code and message."""

    status: int = 500
    error_code: str = "FSS.0500"
    default_message: str = "Internal server error."

    def __init__(
        self,
        message: str | None = None,
        *,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.headers = headers or {}
        if error_code is not None:
            self.error_code = error_code
        super().__init__(self.message)


class BadRequest(ApiError):
    status = 400
    error_code = "FSS.0400"
    default_message = "Invalid parameter."


class Unauthorized(ApiError):
    """A signature that does not verify, as the API gateway reports it."""

    status = 401
    error_code = "APIGW.0301"
    default_message = "Incorrect IAM authentication information: verify aksk signature fail"


class Forbidden(ApiError):
    status = 403
    error_code = "FSS.0403"
    default_message = "invalid token"


class NotFound(ApiError):
    status = 404
    error_code = "FSS.0404"
    default_message = "The specified resource was not found."


class MethodNotAllowed(ApiError):
    status = 405
    error_code = "FSS.0405"
    default_message = "Method not allowed."


class Conflict(ApiError):
    status = 409
    error_code = "FSS.0409"
    default_message = "The specified resource already exists."


class PayloadTooLarge(ApiError):
    status = 413
    error_code = "FSS.0413"
    default_message = "The request body is too large."


class TooManyRequests(ApiError):
    status = 429
    error_code = "FSS.0429"
    default_message = "Too many requests."


class BadGateway(ApiError):
    """What an HTTP trigger's function answered is no HTTP response."""

    status = 502
    error_code = "FSS.0502"
    default_message = "Bad gateway."


class GatewayTimeout(ApiError):
    """An HTTP trigger's function did not answer in the trigger's time."""

    status = 504
    error_code = "FSS.0504"
    default_message = "Gateway timeout."


class InternalError(ApiError):
    status = 500
    error_code = "FSS.0500"
    default_message = "Internal server error."


class ServiceUnavailable(ApiError):
    status = 503
    error_code = "FSS.0503"
    default_message = "Service unavailable."
