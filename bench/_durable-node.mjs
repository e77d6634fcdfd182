// bench/durable's Node baselines (kernel TCP), run inside the benchmark's server namespace:
// (bodies over 64 KiB, the object cells, are streamed: node-http writes each chunk to the log as
// it arrives and fdatasyncs once at the end, and a GET streams the body from the log file)
//   node bench/_durable-node.mjs http|net HOST PORT LOGFILE [sync|async]
// Both are durable key-value HTTP servers with the semantics pmstack httpd has for POST: each
// body is appended to LOGFILE as a record (32-byte header: magic, length, key length, sequence;
// the key; the body) at the next offset, fdatasync is called, and only then 201 is answered; an
// in-memory index maps each key to its record (GET /<key> reads it back from the file).
//   http  node:http (llhttp, keep-alive)
//   https node:https, the same server over TLS (PMSTACK_TLS_CERT, PMSTACK_TLS_KEY: PEM files)
//   net   node:net with a minimal HTTP/1.1 parser (request line, Content-Length, keep-alive,
//         pipelining: requests of one connection are answered in order)
//   resp-floor  not a durable server: the least a Node server on the kernel's TCP does per RESP
//         request, for --prof's floor. node:net; each command (a '*' at a line's start) is
//         answered with +OK, or for a GET with one fixed 1 KiB value, in one write per chunk
//         received; nothing is parsed, looked up, stored or persisted (LOGFILE is left empty)
// "async" (default) uses fs.write + fs.fdatasync callbacks (libuv's thread pool, requests of
// different connections overlap); "sync" uses writeSync + fdatasyncSync on the event loop.
// Prints "LISTENING <pid>" when ready; exits on SIGTERM.
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";

const [kind, host, portArg, logfile, ioArg] = process.argv.slice(2);
const port = Number(portArg);
const sync = ioArg === "sync";
const fd = fs.openSync(logfile, "w+");
const index = new Map();
let pos = 0;
let seq = 0;

/** Appends one record and makes it durable; done(err) after fdatasync. */
function persist(key, body, done) {
  const kb = Buffer.from(key);
  const rec = Buffer.allocUnsafe(32 + kb.length + body.length);
  rec.writeUInt32LE(0x504d4452, 0);
  rec.writeUInt32LE(body.length, 4);
  rec.writeUInt32LE(kb.length, 8);
  rec.writeUInt32LE(seq++, 12);
  rec.fill(0, 16, 32);
  kb.copy(rec, 32);
  body.copy(rec, 32 + kb.length);
  const at = pos;
  pos += rec.length;
  const entry = { at: at + 32 + kb.length, len: body.length };
  if (sync) {
    fs.writeSync(fd, rec, 0, rec.length, at);
    fs.fdatasyncSync(fd);
    index.set(key, entry);
    return done(null);
  }
  fs.write(fd, rec, 0, rec.length, at, (err) => {
    if (err) return done(err);
    fs.fdatasync(fd, (err2) => {
      if (!err2) index.set(key, entry);
      done(err2);
    });
  });
}

function lookup(key) {
  const e = index.get(key);
  if (!e) return null;
  const b = Buffer.allocUnsafe(e.len);
  fs.readSync(fd, b, 0, e.len, e.at);
  return b;
}

/**
 * Streams a body of `len` bytes (Content-Length) into the log as it arrives: the record's
 * header and key first, each chunk written at its offset as it comes (fs.write, or writeSync),
 * then one fdatasync once every write is done; done(err) after it. What a careful Node server
 * does with a large upload: no copy of the whole body in memory.
 */
function persistStream(key, req, len, done) {
  const kb = Buffer.from(key);
  const head = Buffer.alloc(32 + kb.length);
  head.writeUInt32LE(0x504d4452, 0);
  head.writeUInt32LE(len, 4);
  head.writeUInt32LE(kb.length, 8);
  head.writeUInt32LE(seq++, 12);
  kb.copy(head, 32);
  const at = pos;
  pos += head.length + len;
  let off = at + head.length;
  let pending = 1;
  let failed = null;
  let ended = false;
  const settle = (err) => {
    if (err) failed ??= err;
    if (--pending > 0 || !ended) return;
    if (failed) return done(failed);
    fs.fdatasync(fd, (e) => {
      if (!e) index.set(key, { at: at + head.length, len });
      done(e);
    });
  };
  const write = (buf) => {
    const o = off;
    off += buf.length;
    if (sync) {
      fs.writeSync(fd, buf, 0, buf.length, o);
      return;
    }
    pending++;
    fs.write(fd, buf, 0, buf.length, o, settle);
  };
  write(head);
  req.on("data", write);
  req.on("end", () => {
    ended = true;
    if (sync) {
      fs.fdatasyncSync(fd);
      index.set(key, { at: at + head.length, len });
      return done(null);
    }
    settle(null);
  });
  if (sync) pending = 0;
}

if (kind === "http" || kind === "https") {
  const tls =
    kind === "https"
      ? { cert: fs.readFileSync(process.env.PMSTACK_TLS_CERT), key: fs.readFileSync(process.env.PMSTACK_TLS_KEY) }
      : null;
  const server = (tls ? https.createServer.bind(null, tls) : http.createServer)((req, res) => {
    const key = req.url.slice(1);
    if (req.method === "POST" || req.method === "PUT") {
      const len = Number(req.headers["content-length"] ?? NaN);
      const reply = (err) => {
        res.writeHead(err ? 500 : 201, { "Content-Length": 0 });
        res.end();
      };
      if (len > 65536) return persistStream(key, req, len, reply); // an object: streamed to the log
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => persist(key, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), reply));
    } else if (req.method === "GET") {
      const e = index.get(key);
      if (!e) {
        res.writeHead(404, { "Content-Length": 0 });
        return res.end();
      }
      res.writeHead(200, { "Content-Length": e.len });
      if (e.len <= 65536) return res.end(lookup(key));
      // an object: streamed from the log file
      fs.createReadStream(null, { fd, start: e.at, end: e.at + e.len - 1, autoClose: false }).pipe(res);
    } else {
      res.writeHead(405, { "Content-Length": 0 });
      res.end();
    }
  });
  server.keepAliveTimeout = 60000;
  server.listen(port, host, () => console.log(`LISTENING ${process.pid}`));
} else if (kind === "resp-floor") {
  const OK = Buffer.from("+OK\r\n");
  const VALUE = Buffer.from(`$1024\r\n${"x".repeat(1024)}\r\n`);
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    let last = 10; // the byte before this chunk: a command starts after a line's end
    let get = false; // the last command seen was a GET (its name may come in a later chunk)
    sock.on("data", (d) => {
      let n = 0;
      for (let i = 0; i < d.length; i++) {
        if (d[i] === 0x2a && (i === 0 ? last : d[i - 1]) === 10) {
          n++;
          if (i + 8 < d.length) get = (d[i + 8] | 0x20) === 0x67; // "*2\r\n$3\r\nGET"
        }
      }
      last = d[d.length - 1];
      const one = get ? VALUE : OK;
      if (n === 1) sock.write(one);
      else if (n > 1) sock.write(Buffer.concat(Array.from({ length: n }, () => one)));
    });
    sock.on("error", () => {});
  });
  server.listen(port, host, () => console.log(`LISTENING ${process.pid}`));
} else {
  const CREATED = Buffer.from("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  const BAD = Buffer.from("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let busy = false; // a request of this connection is being persisted: answer in order
    const pump = () => {
      while (!busy) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.toString("latin1", 0, end);
        const sp1 = head.indexOf(" ");
        const sp2 = head.indexOf(" ", sp1 + 1);
        if (sp1 < 0 || sp2 < 0) {
          sock.end(BAD);
          return;
        }
        const method = head.slice(0, sp1);
        const key = head.slice(sp1 + 2, sp2);
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        const len = m ? Number(m[1]) : 0;
        if (buf.length < end + 4 + len) return;
        const body = buf.subarray(end + 4, end + 4 + len);
        buf = buf.subarray(end + 4 + len);
        if (method === "POST" || method === "PUT") {
          busy = true;
          persist(key, body, (err) => {
            busy = false;
            if (err) sock.destroy(err);
            else {
              sock.write(CREATED);
              pump();
            }
          });
        } else if (method === "GET") {
          const b = lookup(key);
          sock.write(
            b
              ? Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n\r\n`), b])
              : Buffer.from("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
          );
        } else sock.write(BAD);
      }
    };
    sock.on("data", (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      pump();
    });
    sock.on("error", () => {});
  });
  server.listen(port, host, () => console.log(`LISTENING ${process.pid}`));
}
process.on("SIGTERM", () => process.exit(0));
