// A redis-server in cluster mode inside a namespace (the peer pmstack's cluster nodes are
// checked against, and benchmarked beside): bound to `ip`, its files in `dir`, protected mode
// off (the namespace holds only the test's own processes), announcing `ip` on the bus (a
// connection between two of the namespace's loopback addresses comes from the destination's
// own). Resolves once it answers PING; stop() ends it by PID.
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export async function startRedisClusterNode(ns, { ip, port = 6379, dir, args = [] }) {
  mkdirSync(dir, { recursive: true });
  const proc = ns.spawn("redis-server", [
    ...["--bind", ip, "--port", String(port), "--protected-mode", "no", "--cluster-enabled", "yes"],
    ...["--cluster-announce-ip", ip, "--cluster-config-file", join(dir, "nodes.conf"), "--dir", dir, "--save", ""],
    ...args,
  ]);
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, "SIGKILL");
    await proc.done;
  };
  for (let k = 0; ; k++) {
    const p = spawnSync("ip", ["netns", "exec", ns.name, "redis-cli", "-h", ip, "-p", String(port), "PING"], {
      encoding: "utf8",
    });
    if (p.stdout?.trim() === "PONG") break;
    if (k > 200 || proc.exitCode !== null) {
      await stop();
      throw new Error(`redis-server at ${ip}:${port} did not start: ${proc.out ?? ""}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, stop };
}
