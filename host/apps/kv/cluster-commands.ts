// The cluster commands of the key-value store: CLUSTER's subcommands, ASKING, READONLY and
// READWRITE, with Redis 7.0's replies and errors. The state is kv/cluster.ts's.

import type { Conn } from "../conn.js";
import { isIP } from "../../addr.js";
import type { Arg, Kv, KvClient } from "./commands.js";
import { CLUSTER_SLOTS, keyHashSlot, type ClusterNode, type ClusterState } from "./cluster.js";
import { arrayHead, bulk, int, nested, OK, simple, str, type Nested } from "./reply.js";
import { busTypeName } from "./bus.js";

const DISABLED = "ERR This instance has cluster support disabled";
const E_INT = "ERR value is not an integer or out of range";

const HELP = [
  "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
  "ADDSLOTS <slot> [<slot> ...]",
  "    Assign slots to current node.",
  "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
  "    Assign slots which are between <start-slot> and <end-slot> to current node.",
  "BUMPEPOCH",
  "    Advance the cluster config epoch.",
  "COUNTKEYSINSLOT <slot>",
  "    Return the number of keys in <slot>.",
  "DELSLOTS <slot> [<slot> ...]",
  "    Delete slots information from current node.",
  "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
  "    Delete slots information which are between <start-slot> and <end-slot>.",
  "FLUSHSLOTS",
  "    Delete current node own slots information.",
  "GETKEYSINSLOT <slot> <count>",
  "    Return key names stored by current node in a slot.",
  "INFO",
  "    Return information about the cluster.",
  "KEYSLOT <key>",
  "    Return the hash slot for <key>.",
  "MEET <ip> <port> [<bus-port>]",
  "    Connect nodes into a working cluster.",
  "MYID",
  "    Return the node id.",
  "NODES",
  "    Return cluster configuration seen by node. Output format:",
  "    <id> <ip:port@bus-port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
  "SAVECONFIG",
  "    Force saving cluster configuration on disk.",
  "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
  "    Set slot state.",
  "SET-CONFIG-EPOCH <epoch>",
  "    Set config epoch of current node.",
  "SHARDS",
  "    Return information about slot range mappings and the nodes associated with them.",
  "SLOTS",
  "    Return information about slots range mappings. Each range is made of:",
  "    start, end, master and replicas IP addresses, ports and ids",
  "HELP",
  "    Print this help.",
];

/** A decimal integer argument (Redis's getLongLongFromObject), or null. */
function integer(k: Kv, a: Arg): number | null {
  const t = k.text(a);
  if (!/^-?(0|[1-9][0-9]{0,17})$/.test(t)) return null;
  return Number(t);
}

/** A slot argument, or null after answering Redis's error. */
function slotArg(k: Kv, c: Conn<KvClient>, a: Arg): number | null {
  const s = integer(k, a);
  if (s === null || s < 0 || s >= CLUSTER_SLOTS) {
    k.error(c, "ERR Invalid or out of range slot");
    return null;
  }
  return s;
}

/** The node entry of CLUSTER SLOTS: ip, port, id and (RESP2) an empty map of other endpoints. */
const nodeEntry = (n: ClusterNode): Nested => [n.ip, n.port, n.id, []];

function slotsReply(cl: ClusterState): Nested {
  const out: Nested[] = [];
  for (const n of cl.nodes.values()) {
    if (n.flags.has("slave")) continue;
    for (const [a, b] of cl.ranges(n)) out.push([a, b, nodeEntry(n)]);
  }
  return out;
}

function shardsReply(cl: ClusterState): Nested {
  const out: Nested[] = [];
  for (const n of cl.nodes.values()) {
    if (n.flags.has("slave")) continue;
    const slots: Nested[] = [];
    for (const [a, b] of cl.ranges(n)) slots.push(a, b);
    const node: Nested[] = ["id", n.id, "port", n.port, "ip", n.ip, "endpoint", n.ip, "role", "master"];
    node.push("replication-offset", 0, "health", n.flags.has("fail") ? "fail" : "online");
    out.push(["slots", slots, "nodes", [node]]);
  }
  return out;
}

export function clusterCommand(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const cl = k.cluster;
  if (!cl) return k.error(c, DISABLED);
  const sub = k.text(a[1]!).toLowerCase();
  const n = a.length;
  const ok = () => k.reply(c, [OK]);
  switch (
    n === 2 ? sub : n === 3 && (sub === "keyslot" || sub === "countkeysinslot" || sub === "set-config-epoch") ? sub : ""
  ) {
    case "help":
      return k.reply(c, [arrayHead(HELP.length), ...HELP.map((h) => simple(h))]);
    case "info":
      return k.reply(c, [bulk(cl.infoText(k.bus?.stats ?? { sent: 0, received: 0 }, busTypeName))]);
    case "nodes":
      return k.reply(c, [bulk(cl.nodesText())]);
    case "myid":
      return k.reply(c, [bulk(cl.myself.id)]);
    case "slots":
      return k.reply(c, [str(nested(slotsReply(cl)))]);
    case "shards":
      return k.reply(c, [str(nested(shardsReply(cl)))]);
    case "keyslot":
      return k.reply(c, [int(keyHashSlot(k.bytes(a[2]!)))]);
    case "countkeysinslot": {
      const s = integer(k, a[2]!);
      if (s === null) return k.error(c, E_INT);
      if (s < 0 || s >= CLUSTER_SLOTS) return k.error(c, "ERR Invalid slot");
      k.store.sweepAll();
      return k.reply(c, [int(k.slots!.count(s))]);
    }
    case "flushslots":
      if (k.store.size !== 0) return k.error(c, "ERR DB must be empty to perform CLUSTER FLUSHSLOTS.");
      cl.flushSlots();
      return ok();
    case "bumpepoch": {
      const bumped = cl.bumpEpoch();
      return k.reply(c, [simple(`${bumped ? "BUMPED" : "STILL"} ${cl.myself.configEpoch}`)]);
    }
    case "saveconfig":
      cl.save();
      return ok();
    case "set-config-epoch": {
      const e = integer(k, a[2]!);
      if (e === null) return k.error(c, E_INT);
      const err = cl.setConfigEpoch(e);
      return err ? k.error(c, err) : ok();
    }
  }
  if (sub === "getkeysinslot" && n === 4) {
    const s = integer(k, a[2]!);
    const max = integer(k, a[3]!);
    if (s === null || max === null) return k.error(c, E_INT);
    if (s < 0 || s >= CLUSTER_SLOTS || max < 0) return k.error(c, "ERR Invalid slot or number of keys");
    k.store.sweepAll();
    const keys = k.slots!.keys(s, max);
    return k.reply(c, [arrayHead(keys.length), ...keys.map((x) => bulk(x))]);
  }
  if (sub === "setslot" && n >= 4) {
    // CLUSTER SETSLOT <slot> IMPORTING|MIGRATING|NODE <node-id> | STABLE
    const slot = slotArg(k, c, a[2]!);
    if (slot === null) return;
    const action = k.text(a[3]!).toLowerCase();
    const withId = action === "migrating" || action === "importing" || action === "node";
    if ((withId && n !== 5) || (action === "stable" && n !== 4))
      return k.error(c, "ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP");
    k.store.sweepAll();
    const err = cl.setSlot(slot, action, withId ? k.text(a[4]!) : null, k.slots!.count(slot));
    if (!err && action === "node") k.bus?.broadcastPong();
    return err ? k.error(c, err) : ok();
  }
  if (sub === "meet" && (n === 4 || n === 5)) {
    // CLUSTER MEET <ip> <port> [<bus port>]
    const ip = k.text(a[2]!);
    const port = integer(k, a[3]!);
    if (port === null) return k.error(c, `ERR Invalid base port specified: ${k.text(a[3]!)}`);
    const cport = n === 5 ? integer(k, a[4]!) : port + 10000;
    if (cport === null) return k.error(c, `ERR Invalid bus port specified: ${k.text(a[4]!)}`);
    if (!isIP(ip) || !k.bus) return k.error(c, `ERR Invalid node address specified: ${ip}:${port}`);
    const err = k.bus.meet(ip, port, cport);
    return err ? k.error(c, err) : ok();
  }
  if ((sub === "addslots" || sub === "delslots") && n >= 3) {
    const slots: number[] = [];
    for (let i = 2; i < n; i++) {
      const s = slotArg(k, c, a[i]!);
      if (s === null) return;
      slots.push(s);
    }
    const err = cl.assign(slots, sub === "delslots");
    return err ? k.error(c, err) : ok();
  }
  if ((sub === "addslotsrange" || sub === "delslotsrange") && n >= 4) {
    if (n % 2 === 1) return k.error(c, `ERR wrong number of arguments for 'cluster|${sub}' command`);
    const slots: number[] = [];
    for (let i = 2; i < n; i += 2) {
      const from = slotArg(k, c, a[i]!);
      if (from === null) return;
      const to = slotArg(k, c, a[i + 1]!);
      if (to === null) return;
      if (from > to) return k.error(c, `ERR start slot number ${from} is greater than end slot number ${to}`);
      for (let s = from; s <= to; s++) slots.push(s);
    }
    const err = cl.assign(slots, sub === "delslotsrange");
    return err ? k.error(c, err) : ok();
  }
  k.error(
    c,
    `ERR unknown subcommand or wrong number of arguments for '${k.text(a[1]!).slice(0, 128)}'. Try CLUSTER HELP.`,
  );
}

export function askingCommand(k: Kv, c: Conn<KvClient>): void {
  if (!k.cluster) return k.error(c, DISABLED);
  c.state.asking = true;
  k.reply(c, [OK]);
}

export function readonlyCommand(k: Kv, c: Conn<KvClient>, ro: boolean): void {
  if (!k.cluster) return k.error(c, DISABLED);
  c.state.readonly = ro;
  k.reply(c, [OK]);
}
