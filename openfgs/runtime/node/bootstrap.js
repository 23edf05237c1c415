// The Node.js function instance: the child process that loads user code and serves its
// invocations, speaking the protocol of the Python instance (openfgs/runtime/bootstrap.py).
//
// Started as ``node [--max-old-space-size=N] bootstrap.js OPTIONS`` with the request pipe on
// fd 3, the reply pipe on fd 4, and the output pipe (the function's log) on fd 1, fd 2 and
// again on fd 5, a private copy for the end-of-segment marker that user code closing or
// redirecting fd 1 cannot break. ``OPTIONS`` is ``{"group": {hierarchy: directory}}``, the
// control groups this process is already in. It may start long before its function is known
// (a standby): everything it needs is loaded at start-up, then it waits for the config frame
// in the event loop, using no CPU.
//
// Frames (frames.js) in, in order: the config (handler, limits, names, ``marker``,
// ``code_dir``, ``env``, ``user``, ``cgroup_limits``, ``alias``), then one per invocation
// (header ``request_id``, ``max_result_bytes``, ``alias``; body the event as JSON). Out: a
// load frame once the module is loaded (or why not), an init frame after the initializer
// (only when one is configured), then one reply per invocation (header ``status``,
// ``message``, ``duration_ms``, ``maxrss_kb``; body the result, or FunctionGraph's error
// object for a function error). Before each frame out, the marker goes to the log so the
// service knows where that frame's output ends; console writes are made synchronous so none
// of an invocation's output trails its marker.
//
// Before loading user code the instance enters its sandbox: the limits are written into its
// control group while it is still privileged, it drops to the function's user, takes the
// config's environment (nothing of its start-up environment remains) and enters the code
// directory. After a load or initializer failure it exits; the service starts another.
//
// Errors nobody catches (an uncaught exception, an unhandled rejection) fail the invocation
// or initializer that is running, whatever code raised them; between invocations they are
// written to the log and the instance goes on (the next invocation's log shows them). Running
// out of V8's heap ends the process, which the service reports. When the request pipe closes
// the process exits at once, whatever user code is still waiting for; only a handler stuck in
// synchronous code outlives it, until the service kills it and its control group (node cannot
// ask the kernel to kill it with its parent, and as process 1 of a PID namespace it cannot
// kill itself from another thread).
"use strict";

const fs = require("fs");
const net = require("net");
const path = require("path");
const { performance } = require("perf_hooks");

const { Context } = require("./context");
const { FrameReader, encodeFrame, writeAll } = require("./frames");
const {
  LoadError,
  loadExport,
  callUser,
  encodeResult,
  describeError,
  printError,
  setErrorOutput,
} = require("./handler");

const REQUEST_FD = 3;
const REPLY_FD = 4;
const MARK_FD = 5;

// Reply statuses; the service maps them to its error codes.
const OK = "ok";
const FUNCTION_ERROR = "function_error";
const INITIALIZER_FAILED = "initializer_failed";
const RESULT_TOO_LARGE = "result_too_large";

const DEFAULT_MAX_RESULT_BYTES = 6 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);

// Taken before user code runs, which may replace process.exit or listen for "exit".
const exitNow = (process.reallyExit || process.exit).bind(process);

/** Text into the log, through the private descriptor (user code may close fd 1). */
function writeLog(text) {
  writeAll(MARK_FD, Buffer.from(text, "utf8"));
}

/** The instance's end of the protocol pipes. */
class Channel {
  constructor() {
    this.marker = EMPTY;
  }

  /** End the current log segment, then send one frame. */
  send(header, body = EMPTY) {
    try {
      writeAll(MARK_FD, this.marker);
      writeAll(REPLY_FD, encodeFrame(header, body));
    } catch (error) {
      if (error.code === "EPIPE") {
        exitNow(0); // the service has gone
      }
      throw error;
    }
  }

  /** Hand each frame from the service to ``serve`` (one at a time); exit when it closes. */
  listen(serve) {
    let queue = Promise.resolve();
    const reader = new FrameReader((header, body) => {
      queue = queue.then(() => serve(header, body)).catch(crash);
    });
    const requests = new net.Socket({ fd: REQUEST_FD, readable: true, writable: false });
    requests.on("data", (chunk) => {
      try {
        reader.push(chunk);
      } catch (error) {
        crash(error); // not a frame of ours
      }
    });
    requests.on("end", () => exitNow(0));
    requests.on("error", () => exitNow(0));
  }
}

function crash(error) {
  printError(error);
  exitNow(1);
}

// The call to user code running now (an invocation or the initializer), as a function that
// fails it (false when it has already answered); null between calls.
let interruptCurrent = null;

function failCurrent(error) {
  if (interruptCurrent === null || !interruptCurrent(error)) {
    printError(error); // nothing to fail, but not lost
  }
}

async function callGuarded(fn, args) {
  try {
    return await callUser(fn, args, (interrupt) => {
      interruptCurrent = interrupt;
    });
  } finally {
    interruptCurrent = null;
  }
}

/** Become the instance ``config`` describes; returns why not, or "" on success. */
function enterSandbox(config, groups) {
  try {
    writeLimits(config.cgroup_limits || {}, groups);
  } catch (error) {
    return `function instance could not enter its control group: ${error.message}`;
  }
  const user = config.user;
  if (user) {
    try {
      process.setgroups(user.groups);
      process.setgid(user.gid);
      process.setuid(user.uid);
    } catch (error) {
      return `function instance could not drop privileges to ${JSON.stringify(user)}: ${error.message}`;
    }
  }
  // Only now: nothing of the function's environment is seen by a privileged process.
  replaceEnvironment(config.env || {});
  try {
    process.chdir(String(config.code_dir));
  } catch (error) {
    // Not error.message, which names the directory the service started node in.
    return `function instance cannot enter its code directory ${config.code_dir}: ${error.code}`;
  }
  return "";
}

/** hierarchy → file → value, into this instance's groups; the files are root's, so the
 * function cannot raise its own limits afterwards. */
function writeLimits(limits, groups) {
  for (const [hierarchy, files] of Object.entries(limits)) {
    if (!Object.hasOwn(groups, hierarchy)) {
      throw new Error(`no group of the ${hierarchy} hierarchy`);
    }
    for (const [name, value] of Object.entries(files)) {
      // No O_CREAT: a limit the kernel does not know is an error, not a new file.
      const fd = fs.openSync(path.join(groups[hierarchy], name), fs.constants.O_WRONLY);
      try {
        fs.writeSync(fd, String(value));
      } finally {
        fs.closeSync(fd);
      }
    }
  }
}

function replaceEnvironment(env) {
  for (const name of Object.keys(process.env)) {
    delete process.env[name];
  }
  for (const [name, value] of Object.entries(env)) {
    process.env[name] = String(value);
  }
  // Global module folders ($HOME/.node_modules, NODE_PATH) were computed from the start-up
  // environment; the function's own apply.
  require("module")._initPaths?.();
}

/** Enter the sandbox, load the handler, run the initializer: the handler, or null. */
async function start(channel, config, groups) {
  channel.marker = Buffer.from(String(config.marker ?? ""), "utf8");
  const problem = enterSandbox(config, groups);
  if (problem) {
    channel.send({ status: FUNCTION_ERROR, message: problem });
    return null;
  }
  const codeDir = String(config.code_dir);
  let handler;
  try {
    handler = await loadExport(codeDir, String(config.handler), "handler");
  } catch (error) {
    channel.send({ status: FUNCTION_ERROR, message: loadMessage(error) });
    return null;
  }
  channel.send({ status: OK, message: "" });
  if (config.initializer) {
    const message = await runInitializer(config, codeDir);
    channel.send({ status: message ? INITIALIZER_FAILED : OK, message });
    if (message) {
      return null;
    }
  }
  return handler;
}

function loadMessage(error) {
  if (error instanceof LoadError) {
    return error.message;
  }
  printError(error);
  const { errorType, errorMessage } = describeError(error);
  return `function module did not load: ${errorType}: ${errorMessage}`;
}

/** Run the initializer once; "" when it succeeded, else why not. */
async function runInitializer(config, codeDir) {
  let initializer;
  try {
    initializer = await loadExport(codeDir, String(config.initializer), "initializer");
  } catch (error) {
    return loadMessage(error);
  }
  const context = new Context({
    config,
    requestId: "",
    alias: String(config.alias ?? ""),
    timeoutSeconds: Number(config.initializer_timeout ?? config.timeout),
    write: writeLog,
  });
  const outcome = await callGuarded(initializer, [context]);
  if (!("error" in outcome)) {
    return "";
  }
  printError(outcome.error);
  const { errorType, errorMessage } = describeError(outcome.error);
  return `initializer failed: ${errorType}: ${errorMessage}`;
}

/** Run the handler once and turn every outcome into a reply frame: [header, body]. */
async function invoke(handler, config, header, body) {
  const started = performance.now();
  const context = new Context({
    config,
    requestId: String(header.request_id),
    alias: String(header.alias ?? config.alias ?? ""),
    timeoutSeconds: Number(config.timeout),
    write: writeLog,
  });
  let outcome;
  try {
    outcome = await callGuarded(handler, [JSON.parse(body.toString("utf8")), context]);
  } catch (error) {
    outcome = { error }; // an event that is not JSON: the service's fault, reported all the same
  }
  const durationMs = performance.now() - started;
  const limit = Number(header.max_result_bytes ?? DEFAULT_MAX_RESULT_BYTES);
  if ("error" in outcome) {
    printError(outcome.error);
    return failure(describeError(outcome.error), durationMs, limit);
  }
  let result;
  try {
    result = encodeResult(outcome.value);
  } catch (error) {
    const described = describeError(error);
    const errorMessage = `function result is not JSON serializable: ${described.errorMessage}`;
    return failure({ ...described, errorMessage }, durationMs, limit);
  }
  if (result.length > limit) {
    const message = `function result is ${result.length} bytes, more than the limit of ${limit}`;
    return [reply(RESULT_TOO_LARGE, message, durationMs), EMPTY];
  }
  return [reply(OK, "", durationMs), result];
}

/** A function error's reply; its body is the error object, as much of it as the caller's
 * limit on the body allows (the stack goes first, then all of it). */
function failure(errorObject, durationMs, limit) {
  const message = `${errorObject.errorType}: ${errorObject.errorMessage}`;
  const withoutStack = { errorMessage: errorObject.errorMessage, errorType: errorObject.errorType };
  const body = [errorObject, withoutStack]
    .map((shape) => Buffer.from(JSON.stringify(shape), "utf8"))
    .find((encoded) => encoded.length <= limit);
  return [reply(FUNCTION_ERROR, message, durationMs), body ?? EMPTY];
}

function reply(status, message, durationMs) {
  return {
    status,
    message,
    duration_ms: durationMs,
    maxrss_kb: process.resourceUsage().maxRSS,
  };
}

function main() {
  let groups = {};
  try {
    groups = JSON.parse(process.argv[2] || "{}").group || {};
  } catch {
    // Not the service's options: no groups to write limits into, which the config will say.
  }
  process.argv.splice(2); // the service's paths are not the function's business
  // Node writes to pipes asynchronously; blocking writes keep all of an invocation's console
  // output ahead of its marker.
  for (const stream of [process.stdout, process.stderr]) {
    stream._handle?.setBlocking?.(true);
  }
  setErrorOutput(writeLog);
  process.on("uncaughtException", failCurrent);
  process.on("unhandledRejection", failCurrent);
  // Node opens its inspector on 127.0.0.1:9229 on SIGUSR1, from which anyone on the host
  // could run code in this instance; a listener of our own keeps it shut.
  process.on("SIGUSR1", () => {});

  const channel = new Channel();
  let config = null;
  let handler = null;
  channel.listen(async (header, body) => {
    if (config === null) {
      config = header;
      handler = await start(channel, config, groups);
      if (handler === null) {
        exitNow(0);
      }
      return;
    }
    channel.send(...(await invoke(handler, config, header, body)));
  });
}

main();
