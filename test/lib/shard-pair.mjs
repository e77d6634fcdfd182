// Two workers of a sharded app in one thread, for the deterministic tests: worker 0 is a pair's
// app (its clients driven by the test), worker 1 an app on a stack of its own with no clients;
// each worker's turn batches go into a queue the test delivers after each of worker 0's turns.
import { Stack, PmLog } from "../../build/index.js";

/**
 * The two workers' transports (`t0` for worker 0's app, made before it) and `join(h, …)`, which
 * makes worker 1 (`make(stack, log, t1)` returns its app) and carries the batches: `h.turn`
 * runs worker 0's turn, then worker 1's with what worker 0 sent, then hands worker 1's batch
 * to worker 0 (taken at its next turn's end). `h.batches` counts the messages, `h.peer` holds
 * worker 1's stack, log and app, and `h.close` closes both.
 */
export function shardQueues() {
  const to0 = [];
  const to1 = [];
  const t0 = { index: 0, count: 2, send: (to, m) => to1.push(m) };
  const t1 = { index: 1, count: 2, send: (to, m) => to0.push(m) };
  const join = (h, { buffers, make }) => {
    const stack = Stack.create({
      mac: "02:00:00:00:08:09",
      ip: "198.18.8.9/24",
      pool: { buffers, metaBytes: 1 << 20 },
      configure: (core) => PmLog.configure(core),
    });
    const log = PmLog.open(stack.pool);
    const app = make(stack, log, t1);
    const turn = h.turn;
    h.batches = 0;
    h.turn = () => {
      const moved = turn();
      for (const m of to1.splice(0)) {
        h.batches++;
        app.shards.receive(0, m);
      }
      app.onTurnEnd();
      for (const m of to0.splice(0)) {
        h.batches++;
        h.app.shards.receive(1, m);
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
