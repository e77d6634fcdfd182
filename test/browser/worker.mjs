// The test page's Worker: runs one scenario (scenarios.mjs) on the browser bundle and posts
// its result, or its error with its code.
import * as pm from "/build/pmstack.js";
import * as scenarios from "/test/scenarios.mjs";

onmessage = async (e) => {
  const { scenario, args } = e.data;
  try {
    if (typeof scenarios[scenario] !== "function") throw new Error(`no scenario ${scenario}`);
    postMessage({ result: await scenarios[scenario](pm, args) });
  } catch (err) {
    postMessage({ error: `${err?.code ? err.code + ": " : ""}${err?.stack ?? err}` });
  }
};
