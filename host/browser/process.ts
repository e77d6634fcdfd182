// The `process` that readable-stream (node:stream in the browser build) asks for. It needs
// process.nextTick, and looks at process.env and process.stdout/stderr. The npm `process` shim
// runs nextTick callbacks in a setTimeout(0) task, which browsers clamp to 4 ms once nested: a
// stream's every deferred step (a 'drain', an 'end', a callback after a write) would wait that
// long. Node runs them before the next task, as a microtask does here.

function nextTick<A extends unknown[]>(fn: (...args: A) => void, ...args: A): void {
  queueMicrotask(args.length ? () => fn(...args) : (fn as () => void));
}

const process = {
  nextTick,
  env: {} as Record<string, string | undefined>,
  stdout: undefined,
  stderr: undefined,
  browser: true,
};

export default process;
export { nextTick };
