// FunctionGraph's Node.js ``context`` object and its logger, with the exact method names of
// the official table (``ID``, ``MilliSeconds``, ``CPU``) plus ``getProjectID``.
"use strict";

const { performance } = require("perf_hooks");
const util = require("util");

// FunctionGraph's Node.js logger splits each message into pieces of this many characters,
// one log line each.
const MAX_LINE_CHARS = 90 * 1024;
// Which levels each setting lets through; ERROR always goes out.
const LEVELS = { DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3 };

/** ``context.getLogger()``: ``<UTC time> <request id> <LEVEL> <message>`` lines in the log. */
class Logger {
  #requestId;
  #write;
  #level = LEVELS.INFO;

  constructor(requestId, write) {
    this.#requestId = requestId;
    this.#write = write;
  }

  /** One of DEBUG, INFO, WARN, ERROR; anything else leaves the level as it was. */
  setLevel(level) {
    if (Object.hasOwn(LEVELS, level)) {
      this.#level = LEVELS[level];
    }
  }

  debug(...args) {
    this.#log("DEBUG", args);
  }

  info(...args) {
    this.#log("INFO", args);
  }

  warn(...args) {
    this.#log("WARN", args);
  }

  error(...args) {
    this.#log("ERROR", args);
  }

  #log(level, args) {
    if (LEVELS[level] < this.#level) {
      return;
    }
    const prefix = `${new Date().toISOString()} ${this.#requestId} ${level} `;
    const lines = splitMessage(util.format(...args)).map((piece) => `${prefix}${piece}\n`);
    this.#write(lines.join(""));
  }
}

function splitMessage(message) {
  const pieces = [];
  let start = 0;
  do {
    let end = Math.min(start + MAX_LINE_CHARS, message.length);
    const last = message.charCodeAt(end - 1);
    if (end < message.length && last >= 0xd800 && last <= 0xdbff) {
      end -= 1; // never cut a surrogate pair in two
    }
    pieces.push(message.slice(start, end));
    start = end;
  } while (start < message.length);
  return pieces;
}

/**
 * The context of one invocation (or of the initializer, with request id "").
 *
 * ``config`` is the instance's config frame; ``timeoutSeconds`` starts counting now.
 * ``write`` puts text into the log.
 */
class Context {
  #config;
  #requestId;
  #alias;
  #deadline;
  #logger;

  constructor({ config, requestId, alias, timeoutSeconds, write }) {
    this.#config = config;
    this.#requestId = requestId;
    this.#alias = alias;
    this.#deadline = performance.now() + timeoutSeconds * 1000;
    this.#logger = new Logger(requestId, write);
  }

  getRequestID() {
    return this.#requestId;
  }

  getRemainingTimeInMilliSeconds() {
    return Math.max(0, Math.floor(this.#deadline - performance.now()));
  }

  // No agency credentials exist here; FunctionGraph returns "" when none is configured.
  getAccessKey() {
    return "";
  }

  getSecretKey() {
    return "";
  }

  getSecurityAccessKey() {
    return "";
  }

  getSecuritySecretKey() {
    return "";
  }

  getSecurityToken() {
    return "";
  }

  getToken() {
    return "";
  }

  /** The user data value of ``key``; undefined when there is none (never an inherited one). */
  getUserData(key) {
    const userData = this.#config.user_data || {};
    return Object.hasOwn(userData, key) ? String(userData[key]) : undefined;
  }

  getFunctionName() {
    return String(this.#config.function_name);
  }

  /** The function's timeout in seconds (what FunctionGraph documents, not the elapsed time). */
  getRunningTimeInSeconds() {
    return Number(this.#config.timeout);
  }

  getVersion() {
    return String(this.#config.version);
  }

  getMemorySize() {
    return Number(this.#config.memory_size);
  }

  getCPUNumber() {
    return Number(this.#config.cpu);
  }

  getPackage() {
    return String(this.#config.package);
  }

  getProjectID() {
    return String(this.#config.project_id);
  }

  getAlias() {
    return this.#alias;
  }

  getLogger() {
    return this.#logger;
  }
}

module.exports = { Context, Logger };
