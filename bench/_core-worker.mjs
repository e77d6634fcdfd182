// One thread of bench/core's system pmstack-2workers: bench/core's rr workload (rrRun: its own
// pair of stacks and MemoryLink, workerData.n connections) in a worker_thread, sharing nothing
// with the other. It warms up, posts {ready}, keeps the exchange going until the main thread
// stores 1 in workerData.go[0] (a SharedArrayBuffer), then runs workerData.seconds and posts
// {tx, start, ms, cpuMs}: cpuMs is this thread's CPU time over its window (/proc/thread-self),
// which tells a round in which something else took the CPUs.
import { parentPort, workerData } from "node:worker_threads";
import { rrRun } from "./core.mjs";
import { cpuUs } from "./_lib.mjs";

const { n, seconds, go } = workerData;
const flag = new Int32Array(go);
let cpu0 = 0;
const res = rrRun(seconds, n, {
  ready: () => parentPort.postMessage({ ready: true }),
  go: () => Atomics.load(flag, 0) === 1 && ((cpu0 = cpuUs("thread-self")), true),
});
parentPort.postMessage({ ...res, cpuMs: (cpuUs("thread-self") - cpu0) / 1000 });
