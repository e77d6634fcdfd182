// Two workers of a sharded app in one thread, for the deterministic tests: worker 0 is a pair's
// app (its clients driven by the test), worker 1 an app on a stack of its own with no clients;
// each worker's turn batches go into a queue the test delivers after each of worker 0's turns.
import { Stack, PmLog } from "../../build/index.js";

/**
 * The two workers' transports (`t0` for worker 0's app, made before it) and `join(h, …)`, which
 * makes worker 1 (`make(stack, log, t1)` returns its app; its pool at `path`, or volatile) and
 * carries the batches: `h.turn` runs worker 0's turn, then worker 1's with what worker 0 sent,
 * then hands worker 1's batch to worker 0 (taken at its next turn's end). `h.batches` counts
 * the messages, `h.peer` holds worker 1's stack, log and app, `h.drop` (when true) loses the
 * batches instead (a crash between the workers), and `h.close` closes both. With `lend`, the
 * workers read each other's pools (kv: writes cross as loans); the pools of one thread need no
 * shared memory for that.
 */
export function shardQueues({ lend = false } = {}) {
  const to0 = [];
  const to1 = [];
  const t0 = { index: 0, count: 2, send: (to, m) => to1.push(m), lend };
  const t1 = { index: 1, count: 2, send: (to, m) => to0.push(m), lend };
  const join = (h, { buffers, make, path }) => {
    const stack = Stack.create({
      mac: "02:00:00:00:08:09",
      ip: "198.18.8.9/24",
      pool: { buffers, metaBytes: 1 << 20, path },
      configure: (core) => PmLog.configure(core),
    });
    const log = PmLog.open(stack.pool);
    const app = make(stack, log, t1);
    if (lend) {
      app.shards.attachPeer(0, h.srv.pool.core.memory.buffer, h.srv.pool.address(0));
      h.app.shards.attachPeer(1, stack.pool.core.memory.buffer, stack.pool.address(0));
    }
    h.drop = false;
    const turn = h.turn;
    h.batches = 0;
    h.turn = () => {
      const moved = turn();
      for (const m of to1.splice(0)) {
        h.batches++;
        if (!h.drop) app.shards.receive(0, m);
      }
      app.onTurnEnd();
      for (const m of to0.splice(0)) {
        h.batches++;
        if (!h.drop) h.app.shards.receive(1, m);
      }
      return moved;
    };
    h.peer = { stack, log, app };
    const close = h.close;
    h.close = () => {
      close();
      app.close();
      stack.shutdown();
    };
    return h;
  };
  return { t0, join };
}
