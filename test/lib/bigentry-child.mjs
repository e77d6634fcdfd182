// Child for test/journal-powerloss.test.mjs: writes key "a" twice in journal mode, a short
// value, then one of SIZE bytes in 1448-byte ranges with a flush() per MiB (journal entries of
// about 724 payload ranges each, several of them merged into one batch: more iovecs than one
// pwritev takes), prints ACK once the second is durable, and waits to be killed.
import { PmLog } from "../../build/index.js";
import { fill } from "./pattern.mjs";

const [path, size] = [process.argv[2], Number(process.argv[3])];
const log = PmLog.openFile(path, { buffers: 131072, mode: "journal" });
const pool = log.pool;
function put(seed, bytes, flushEvery) {
  const w = log.writer();
  const data = new Uint8Array(bytes);
  fill(data, seed);
  let since = 0;
  for (let at = 0; at < bytes; at += 1448) {
    const len = Math.min(1448, bytes - at);
    const i = pool.alloc();
    pool.view(i, 66, len).set(data.subarray(at, at + len));
    w.push({ index: i, offset: 66, length: len });
    pool.free(i);
    since += len;
    if (since >= flushEvery) {
      log.flush();
      since = 0;
    }
  }
  log.put("a", w);
  log.flush();
}
put(1, 1000, Infinity);
log.commit();
put(2, size, 1 << 20);
const seq = log.lastSeq;
const t = setInterval(() => {
  log.poll();
  if (log.durableSeq >= seq) {
    clearInterval(t);
    process.stdout.write("ACK\n");
    setInterval(() => {}, 1000);
  }
}, 1);
