// The wire format shared with the service (openfgs/runtime/bootstrap.py): a frame is the
// header length and the body length (4-byte big-endian each), a UTF-8 JSON header (an
// object), then the raw body.
"use strict";

const fs = require("fs");

const PREFIX_BYTES = 8;

/** Splits a byte stream, arriving in chunks of any size, into frames (``onFrame(header, body)``). */
class FrameReader {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.chunks = [];
    this.buffered = 0;
    this.headerBytes = 0;
    this.frameBytes = null; // the whole frame's size, once its prefix is in
  }

  push(chunk) {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.frameBytes === null) {
        if (this.buffered < PREFIX_BYTES) {
          return;
        }
        const prefix = this.joined();
        this.headerBytes = prefix.readUInt32BE(0);
        this.frameBytes = PREFIX_BYTES + this.headerBytes + prefix.readUInt32BE(4);
      }
      // Chunks are joined once the whole frame is there: a 6 MB event arriving in 64 KB
      // pieces is copied once, not once per piece.
      if (this.buffered < this.frameBytes) {
        return;
      }
      const data = this.joined();
      const frame = data.subarray(0, this.frameBytes);
      const rest = data.subarray(this.frameBytes);
      this.chunks = rest.length ? [rest] : [];
      this.buffered = rest.length;
      this.frameBytes = null;
      const bodyStart = PREFIX_BYTES + this.headerBytes;
      const header = JSON.parse(frame.toString("utf8", PREFIX_BYTES, bodyStart));
      this.onFrame(header, frame.subarray(bodyStart));
    }
  }

  joined() {
    if (this.chunks.length > 1) {
      this.chunks = [Buffer.concat(this.chunks)];
    }
    return this.chunks[0];
  }
}

/** One frame's bytes. */
function encodeFrame(header, body = Buffer.alloc(0)) {
  const encoded = Buffer.from(JSON.stringify(header), "utf8");
  const prefix = Buffer.alloc(PREFIX_BYTES);
  prefix.writeUInt32BE(encoded.length, 0);
  prefix.writeUInt32BE(body.length, 4);
  return Buffer.concat([prefix, encoded, body]);
}

// A synchronous pause for a descriptor someone made non-blocking (the log pipe is shared with
// fd 1 and 2, whose mode user code can change): Atomics.wait sleeps without spinning.
const pause = new Int32Array(new SharedArrayBuffer(4));

/** Write all of ``data`` to ``fd`` before returning, blocking or not. */
function writeAll(fd, data) {
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset, data.length - offset);
    } catch (error) {
      if (error.code !== "EAGAIN") {
        throw error;
      }
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

module.exports = { FrameReader, encodeFrame, writeAll };
