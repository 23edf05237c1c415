// User code: loading a handler or initializer by its FunctionGraph name, calling it in either
// style, and turning what it answered into bytes or into FunctionGraph's error object.
"use strict";

const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");

// Tried in this order for "<file>.<export>"; .mjs (and a .js in a "type": "module" package)
// are ES modules, loaded with import().
const EXTENSIONS = [".js", ".mjs", ".cjs"];

/** A problem the service hears about as a message (the reason is already in the log). */
class LoadError extends Error {}

/**
 * The function ``name`` ("index.handler", "src/app.main") of the code in ``codeDir``.
 * ``what`` ("handler", "initializer") names it in messages. Throws LoadError.
 */
async function loadExport(codeDir, name, what) {
  const dot = name.lastIndexOf(".");
  const file = name.slice(0, dot);
  const exported = name.slice(dot + 1);
  if (dot <= 0 || !exported) {
    throw new LoadError(`invalid ${what} '${name}': expected 'file.function'`);
  }
  const found = EXTENSIONS.map((ext) => path.join(codeDir, file + ext)).find(isFile);
  if (!found) {
    throw new LoadError(`cannot load module '${file}': no ${file}.js in the code directory`);
  }
  let module;
  try {
    module = await loadModule(found);
  } catch (error) {
    printError(error);
    throw new LoadError(`cannot load module '${file}': ${loadProblem(error, codeDir)}`);
  }
  const value = pick(module, exported);
  if (typeof value !== "function") {
    const why = value === undefined ? "not found" : `is not a function (${typeof value})`;
    throw new LoadError(`${what} '${name}' ${why}`);
  }
  return value;
}

function isFile(candidate) {
  try {
    return fs.statSync(candidate).isFile();
  } catch {
    return false;
  }
}

async function loadModule(file) {
  if (!file.endsWith(".mjs")) {
    try {
      return require(file);
    } catch (error) {
      if (error?.code !== "ERR_REQUIRE_ESM") {
        throw error;
      }
    }
  }
  return import(pathToFileURL(file).href);
}

function pick(module, exported) {
  if (isObject(module) && exported in module) {
    return module[exported];
  }
  // A CommonJS module loaded through import() has its exports under "default".
  const fallback = module?.default;
  return isObject(fallback) ? fallback[exported] : undefined;
}

// "SyntaxError: Unexpected token '}' (index.js:3)": the first line of the message (a missing
// dependency's message goes on with the require stack, which names the runtime's files) and,
// for a syntax error, where it is.
function loadProblem(error, codeDir) {
  const { errorType, errorMessage } = describeError(error);
  const firstLine = errorMessage.split("\n")[0];
  const where = /^(\/[^\n]*):(\d+)\n/.exec(String(safely(() => error.stack) ?? ""));
  const place = where ? ` (${path.relative(codeDir, where[1])}:${where[2]})` : "";
  return `${errorType}: ${firstLine}${error instanceof SyntaxError ? place : ""}`;
}

/**
 * Call ``fn(...args, callback)`` and settle with its answer: ``{ value }`` or ``{ error }``.
 *
 * Whichever comes first answers, later ones are ignored: the callback (a non-null first
 * argument is an error), the settling of a returned promise, a throw. A function that takes
 * no callback parameter and returns something other than a promise answers with that value.
 * ``interrupt`` receives a function that fails the call from outside (an uncaught exception);
 * it returns false once the call has answered.
 */
function callUser(fn, args, interrupt) {
  return new Promise((resolve) => {
    let answered = false;
    const answer = (outcome) => {
      if (!answered) {
        answered = true;
        resolve(outcome);
      }
    };
    interrupt((error) => {
      if (answered) {
        return false;
      }
      answer({ error });
      return true;
    });
    const callback = (error, value) =>
      answer(error === undefined || error === null ? { value } : { error });
    let returned;
    try {
      returned = fn(...args, callback);
    } catch (error) {
      answer({ error });
      return;
    }
    if (isThenable(returned)) {
      Promise.resolve(returned).then(
        (value) => answer({ value }),
        (error) => answer({ error }),
      );
    } else if (fn.length <= args.length) {
      answer({ value: returned });
    }
  });
}

function isObject(value) {
  return value !== null && (typeof value === "object" || typeof value === "function");
}

function isThenable(value) {
  if (!isObject(value)) {
    return false;
  }
  return safely(() => typeof value.then === "function") ?? true; // a throwing getter: rejected
}

/** The body of a successful answer: "" for undefined/null, strings and buffers as they are. */
function encodeResult(value) {
  if (value === undefined || value === null) {
    return Buffer.alloc(0);
  }
  if (typeof value === "string") {
    return Buffer.from(value, "utf8");
  }
  if (value instanceof Uint8Array) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  const text = JSON.stringify(value); // throws for BigInt and cycles
  if (text === undefined) {
    throw new TypeError(`a ${typeof value} has no JSON form`);
  }
  return Buffer.from(text, "utf8");
}

/**
 * FunctionGraph's error object for anything thrown or passed to the callback:
 * ``{errorMessage, errorType, stackTrace}``. Nothing about it is trusted to behave: the name,
 * message and stack of a user's object may be getters that throw.
 */
function describeError(error) {
  const object = isObject(error);
  const name = object ? safely(() => error.name) : undefined;
  const message = object ? safely(() => error.message) : undefined;
  const stack = object ? safely(() => error.stack) : undefined;
  const text = typeof message === "string" ? message : safely(() => String(error));
  return {
    errorMessage: clip(text ?? "unknown error", MAX_MESSAGE_CHARS),
    errorType: clip(typeof name === "string" && name ? name : "Error", MAX_LINE_CHARS),
    stackTrace: typeof stack === "string" ? stackLines(stack) : [],
  };
}

// What an error may take of a reply: the service refuses frames with headers over 1 MiB, and
// a user's error message or stack (Error.stackTraceLimit = Infinity) can be any size.
const MAX_MESSAGE_CHARS = 16 * 1024;
const MAX_LINE_CHARS = 1024;
const MAX_STACK_LINES = 100;

function clip(text, limit) {
  return text.length <= limit ? text : `${text.slice(0, limit)}... (${text.length} characters)`;
}

// The "at ..." lines of a stack, without the runtime's own frames.
function stackLines(stack) {
  return stack
    .split("\n")
    .filter((line) => /^\s+at /.test(line) && !line.includes(__dirname + path.sep))
    .slice(0, MAX_STACK_LINES)
    .map((line) => clip(line.trim(), MAX_LINE_CHARS));
}

/** The error's stack (or what stands for it) as the log shows it. */
function formatError(error) {
  const stack = safely(() => error.stack);
  if (typeof stack === "string") {
    return stack;
  }
  const { errorType, errorMessage } = describeError(error);
  return `${errorType}: ${errorMessage}`;
}

let printErrorTo = (text) => process.stderr.write(text);

/** Where printError writes (the log, through a descriptor user code cannot close). */
function setErrorOutput(write) {
  printErrorTo = write;
}

function printError(error) {
  printErrorTo(`${formatError(error)}\n`);
}

function safely(get) {
  try {
    return get();
  } catch {
    return undefined;
  }
}

module.exports = {
  LoadError,
  loadExport,
  callUser,
  encodeResult,
  describeError,
  printError,
  setErrorOutput,
};
