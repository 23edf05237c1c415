"""The demo function openfgs deploys on its first start: it greets and echoes the event."""

import json


def handler(event, context):
    logger = context.getLogger()
    logger.info(f"hello from {context.getFunctionName()}")
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    return {
        "statusCode": 200,
        "isBase64Encoded": False,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"message": f"hello, {name}", "request_id": context.getRequestID()}),
    }
