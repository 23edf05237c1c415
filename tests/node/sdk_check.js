// The official FunctionGraph Node.js SDK against a running openfgs, signing with AK/SK:
// create a function, invoke it async, list its records as the list API's users query them,
// list the active ones, cancel one, invoke it sync. Prints one JSON object of what it saw;
// any error the SDK throws ends the script with exit status 1.
//
// Usage: node sdk_check.js ENDPOINT PROJECT_ID ACCESS_KEY SECRET_KEY

"use strict";

const core = require("@huaweicloud/huaweicloud-sdk-core");
const fgs = require("@huaweicloud/huaweicloud-sdk-functiongraph");

const [endpoint, projectId, ak, sk] = process.argv.slice(2);
const DEADLINE_MS = 30000;
const HANDLER = [
  "import time",
  "",
  "",
  "def handler(event, context):",
  "    time.sleep(event.get('sleep', 0))",
  "    return {'echo': event}",
  "",
].join("\n");

function client() {
  const credentials = new core.BasicCredentials()
    .withAk(ak)
    .withSk(sk)
    .withProjectId(projectId);
  return fgs.FunctionGraphClient.newBuilder()
    .withCredential(credentials)
    .withEndpoint(endpoint)
    .build();
}

async function createFunction(sdk, name) {
  const body = new fgs.CreateFunctionRequestBody()
    .withFuncName(name)
    .withPackage("default")
    .withRuntime("Python3.9")
    .withTimeout(60)
    .withHandler("index.handler")
    .withMemorySize(128)
    .withCodeType("inline")
    .withFuncCode(new fgs.FuncCode().withFile(Buffer.from(HANDLER).toString("base64")));
  return sdk.createFunction(new fgs.CreateFunctionRequest().withBody(body));
}

async function invokeAsync(sdk, urn, event) {
  const request = new fgs.AsyncInvokeFunctionRequest().withFunctionUrn(urn).withBody(event);
  return (await sdk.asyncInvokeFunction(request)).request_id;
}

// FunctionGraph's time format, UTC. The SDK declares the window bounds as Date, but sends a
// Date as an empty value (querystring) while it signs its String(): bounds go as text.
function wireTime(ms) {
  return new Date(ms).toISOString().slice(0, 19);
}

async function listRecords(sdk, urn, requestId) {
  // The query of the list API's users: a window, a page size, a marker, one request.
  const now = Date.now();
  const request = new fgs.ListAsyncInvocationsRequest()
    .withFunctionUrn(urn)
    .withRequestId(requestId)
    .withMarker("0")
    .withLimit("100")
    .withQueryBeginTime(wireTime(now - 3600 * 1000))
    .withQueryEndTime(wireTime(now + 60 * 1000));
  return sdk.listAsyncInvocations(request);
}

async function waitForStatus(sdk, urn, requestId, wanted) {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const page = await listRecords(sdk, urn, requestId);
    const record = (page.invocations || [])[0];
    if (record && wanted.includes(record.status)) {
      return record;
    }
    if (Date.now() > deadline) {
      throw new Error(`${requestId}: not ${wanted} within ${DEADLINE_MS} ms: ${JSON.stringify(record)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main() {
  const sdk = client();
  const created = await createFunction(sdk, "node-sdk");
  const urn = created.func_urn;

  const quick = await invokeAsync(sdk, urn, { hello: "node" });
  const done = await waitForStatus(sdk, urn, quick, ["SUCCESS"]);
  const listed = await listRecords(sdk, urn, quick);

  const slow = await invokeAsync(sdk, urn, { sleep: 50 });
  const active = await sdk.listActiveAsyncInvocations(
    new fgs.ListActiveAsyncInvocationsRequest().withFunctionUrn(urn).withRequests(slow),
  );
  const cancelBody = new fgs.CancelAsyncInvocationRequestBody().withRequestId(slow).withType("force");
  const cancel = await sdk.cancelAsyncInvocation(
    new fgs.CancelAsyncInvocationRequest().withFunctionUrn(urn).withBody(cancelBody),
  );
  const canceled = await waitForStatus(sdk, urn, slow, ["DISCARD", "FAIL"]);

  const sync = await sdk.invokeFunction(
    new fgs.InvokeFunctionRequest()
      .withFunctionUrn(urn)
      .withXCFFRequestVersion("v1")
      .withBody({ hello: "sync" }),
  );

  console.log(
    JSON.stringify({
      func_urn: urn,
      quick: { request_id: quick, status: done.status, count: listed.count },
      active: (active.invocations || []).map((r) => [r.request_id, r.status]),
      cancel_status: cancel.httpStatusCode,
      canceled: { request_id: slow, status: canceled.status, error_code: canceled.error_code },
      sync: { status: sync.status, result: sync.result },
    }),
  );
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : JSON.stringify(error));
  process.exit(1);
});
