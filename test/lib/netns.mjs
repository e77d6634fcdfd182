// Network namespaces for NIC tests. Every namespace is made by the test (named
// pmstack-<tag>-<pid>-<n>), uses addresses in 198.18.0.0/15 and 2001:2::/48 only, and is deleted with
// everything in it by cleanup() (also at process exit). Nothing here touches the host's own
// namespace: no device, address or route is ever made outside a test namespace.
import { execFileSync, spawn, spawnSync } from "node:child_process";

const live = new Set();
let seq = 0;

process.on("exit", () => {
  for (const ns of live) ns.cleanup();
});

function ip(args, opts = {}) {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...opts });
}

/** Why namespaces cannot be made here, or null if they can (root with CAP_NET_ADMIN and `ip`). */
export function netnsUnavailable() {
  if (process.platform !== "linux") return "not Linux";
  if (typeof process.getuid === "function" && process.getuid() !== 0)
    return "not root (needs CAP_NET_ADMIN and CAP_SYS_ADMIN)";
  const r = spawnSync("ip", ["-V"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return "the `ip` tool (iproute2) is missing";
  const name = `pmstack-probe-${process.pid}`;
  const a = spawnSync("ip", ["netns", "add", name], { encoding: "utf8" });
  if (a.status !== 0) return `cannot make a network namespace: ${a.stderr.trim()}`;
  spawnSync("ip", ["netns", "del", name]);
  return null;
}

/** Checks an address is inside 198.18.0.0/15 or 2001:2::/48 (the benchmarking ranges tests may use). */
export function assertTestAddress(addr) {
  const v4 = /^198\.(18|19)\.\d{1,3}\.\d{1,3}(\/\d+)?$/.test(addr);
  const v6 = /^2001:0{0,3}2:(0{1,4}:|:)[0-9a-f:]*(\/\d+)?$/i.test(addr); // the third group is 0: inside the /48
  if (!v4 && !v6)
    throw new Error(`netns: ${addr} is outside 198.18.0.0/15 and 2001:2::/48; tests use no other addresses`);
  return addr;
}

export class Netns {
  constructor(tag) {
    this.name = `pmstack-${tag}-${process.pid}-${seq++}`;
    this.path = `/run/netns/${this.name}`;
    this.children = new Set();
    ip(["netns", "add", this.name]);
    live.add(this);
    this.ip(["link", "set", "lo", "up"]);
    // Quiet links: no IPv6 autoconfiguration or router solicitations from the test devices.
    this.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true");
  }

  /** `ip -n <ns> ...args`. */
  ip(args) {
    // an IPv6 address has "::" or eight groups (a MAC has six)
    const v6 = (a) => /^[0-9a-f:]+(\/\d+)?$/i.test(a) && (a.includes("::") || a.split(":").length === 8);
    for (const a of args) if (/^\d+\.\d+\.\d+\.\d+/.test(a) || v6(a)) assertTestAddress(a);
    return ip(["-n", this.name, ...args]);
  }

  /**
   * Turns IPv6 on in the namespace (it starts off) without autoconfiguration, router
   * solicitations or duplicate address detection: the test gives every address itself.
   */
  enableIpv6() {
    this.sh(
      "sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 " +
        "net.ipv6.conf.all.autoconf=0 net.ipv6.conf.default.autoconf=0 " +
        "net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0 " +
        "net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 " +
        "net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0",
    );
  }

  /** Runs a command inside the namespace and waits: {status, stdout, stderr}. */
  run(cmd, args = [], opts = {}) {
    const r = spawnSync("ip", ["netns", "exec", this.name, cmd, ...args], {
      encoding: "utf8",
      timeout: opts.timeout ?? 30000,
      input: opts.input,
    });
    return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", error: r.error };
  }

  sh(script, opts = {}) {
    return this.run("sh", ["-c", script], opts);
  }

  /** Starts a command inside the namespace without waiting; resolves {status, stdout, stderr} at exit. */
  spawn(cmd, args = [], opts = {}) {
    const p = spawn("ip", ["netns", "exec", this.name, cmd, ...args], { stdio: ["pipe", "pipe", "pipe"], ...opts });
    this.children.add(p);
    let stdout = "";
    let stderr = "";
    p.out = ""; // what it has printed so far
    p.stdout?.on("data", (d) => {
      stdout += d;
      p.out = stdout;
    });
    p.stderr?.on("data", (d) => (stderr += d));
    p.done = new Promise((resolve) =>
      p.on("close", (status, signal) => {
        this.children.delete(p);
        resolve({ status, signal, stdout, stderr });
      }),
    );
    return p;
  }

  /** Runs a node script inside the namespace (spawned child). */
  node(script, args = [], opts = {}) {
    return this.spawn(process.execPath, [script, ...args], opts);
  }

  /** Ends the processes this namespace's helpers started (by PID), then deletes the namespace. */
  cleanup() {
    if (!live.has(this)) return;
    live.delete(this);
    for (const p of this.children) {
      if (p.exitCode === null && p.signalCode === null && p.pid) {
        try {
          process.kill(p.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    this.children.clear();
    // Deleting the namespace removes its devices (a TAP whose fd is still open goes when the fd closes).
    spawnSync("ip", ["netns", "del", this.name]);
  }
}

/** Namespaces and links whose names say a test made them and that still exist. */
export function leftovers() {
  const ns = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
  const links = spawnSync("ip", ["-o", "link"], { encoding: "utf8" }).stdout ?? "";
  return {
    netns: ns
      .split("\n")
      .map((l) => l.split(" ")[0])
      .filter((n) => n && n.startsWith(`pmstack-`) && n.includes(`-${process.pid}-`)),
    links: links
      .split("\n")
      .map((l) => (l.split(": ")[1] ?? "").split("@")[0])
      .filter((n) => n && /^pm(tap|vk|vp)/.test(n)),
  };
}
