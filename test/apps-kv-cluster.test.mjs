// The key-value store in cluster mode (kv/cluster.ts, kv/cluster-commands.ts) over two stacks
// joined in memory: Redis Cluster's hash slots (CRC16 and hash tags, checked against Redis's
// documented values), CLUSTER's subcommands with Redis 7.0's replies and errors, -MOVED,
// -CROSSSLOT and -CLUSTERDOWN, the keys of each slot through writes, deletes, expiry and a
// reopen, and the configuration (nodes.conf): saved on every change, read back on a restart,
// refused with a clear error when damaged.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { ClusterState, ClusterConfigError, clusterConfigFile, keyHashSlot, crc16, crc64 } from "../build/index.js";
import { scratchDir } from "./lib/tmp.mjs";
import { text, kvPair } from "./lib/memclient.mjs";

const enc = (s) => new TextEncoder().encode(s);
const slot = (s) => keyHashSlot(enc(s));

/** A configuration kept in memory, as a file would keep it. */
function memConfig(initial = null) {
  const c = { name: "memory", text: initial, saves: 0 };
  c.load = () => c.text;
  c.save = (t) => {
    c.text = t;
    c.saves++;
  };
  return c;
}

const fixedRandom = (seed) => (n) => Uint8Array.from({ length: n }, (_, i) => (seed * 31 + i * 7) & 0xff);

test("hash slots: CRC16 (XMODEM) and hash tags, as Redis computes them", () => {
  assert.is(crc16(enc("123456789")), 0x31c3, "the CRC16 check value Redis's crc16.c is tested with");
  // values from Redis's documentation and redis-cli sessions
  assert.is(slot("foo"), 12182);
  assert.is(slot("bar"), 5061);
  assert.is(slot("hello"), 866);
  assert.is(slot("somekey"), 11058);
  // hash tags: the bytes between the first { and the first } after it, if any
  assert.is(slot("{user1000}.following"), slot("user1000"));
  assert.is(slot("{user1000}.followers"), slot("{user1000}.following"));
  assert.is(slot("foo{}{bar}"), crc16(enc("foo{}{bar}")) & 16383, "an empty tag: the whole key");
  assert.is(slot("foo{{bar}}zap"), slot("{bar"), "the tag starts after the first {");
  assert.is(slot("foo{bar}{zap}"), slot("bar"), "only the first tag counts");
  assert.is(slot("{unclosed"), crc16(enc("{unclosed")) & 16383);
  assert.is(slot(""), 0);
  for (let i = 0; i < 1000; i++) assert.ok(slot(`key:${i}`) >= 0 && slot(`key:${i}`) < 16384);
});

test("a standalone server: CLUSTER, ASKING and READONLY answer that cluster support is disabled", () => {
  const h = kvPair();
  try {
    const c = h.connect();
    for (const cmd of [["CLUSTER", "INFO"], ["ASKING"], ["READONLY"], ["READWRITE"]])
      assert.is(h.one(c, ...cmd), "-ERR This instance has cluster support disabled");
    const info = text(h.one(c, "INFO", "cluster"));
    assert.match(info, /cluster_enabled:0/);
    assert.match(text(h.one(c, "INFO", "server")), /redis_mode:standalone/);
  } finally {
    h.close();
  }
});

test("a fresh node: no slots (CLUSTERDOWN), ADDSLOTSRANGE, then every command of one slot runs", () => {
  const config = memConfig();
  const cluster = new ClusterState({ ip: "198.18.8.1", port: 6379, config, random: fixedRandom(1) });
  const h = kvPair({ cluster });
  try {
    const c = h.connect();
    const id = text(h.one(c, "CLUSTER", "MYID"));
    assert.match(id, /^[0-9a-f]{40}$/);
    assert.is(id, cluster.myself.id);
    assert.match(text(h.one(c, "INFO", "cluster")), /cluster_enabled:1/);
    assert.match(text(h.one(c, "INFO", "server")), /redis_mode:cluster/);
    let info = text(h.one(c, "CLUSTER", "INFO"));
    assert.match(info, /^cluster_state:fail\r\n/);
    assert.match(info, /cluster_slots_assigned:0\r\n/);
    assert.match(info, /cluster_known_nodes:1\r\n/);
    assert.is(h.one(c, "SET", "foo", "1"), "-CLUSTERDOWN Hash slot not served");
    assert.is(h.one(c, "PING"), "+PONG", "commands without keys run");
    assert.is(text(h.one(c, "CLUSTER", "NODES")), `${id} 198.18.8.1:6379@16379 myself,master - 0 0 0 connected\n`);
    assert.equal(h.one(c, "CLUSTER", "SLOTS"), []);

    // slots, with Redis's errors
    assert.is(h.one(c, "CLUSTER", "ADDSLOTS", "16384"), "-ERR Invalid or out of range slot");
    assert.is(h.one(c, "CLUSTER", "ADDSLOTS", "x"), "-ERR Invalid or out of range slot");
    assert.is(h.one(c, "CLUSTER", "ADDSLOTS", "5", "5"), "-ERR Slot 5 specified multiple times");
    assert.is(
      h.one(c, "CLUSTER", "ADDSLOTSRANGE", "10", "5"),
      "-ERR start slot number 10 is greater than end slot number 5",
    );
    assert.is(
      h.one(c, "CLUSTER", "ADDSLOTSRANGE", "1", "2", "3"),
      "-ERR wrong number of arguments for 'cluster|addslotsrange' command",
    );
    assert.is(h.one(c, "CLUSTER", "ADDSLOTS", "0"), "+OK");
    assert.is(h.one(c, "CLUSTER", "ADDSLOTS", "0"), "-ERR Slot 0 is already busy");
    assert.is(h.one(c, "CLUSTER", "DELSLOTS", "1"), "-ERR Slot 1 is already unassigned");
    assert.is(h.one(c, "CLUSTER", "ADDSLOTSRANGE", "1", "8000", "8001", "16383"), "+OK");
    info = text(h.one(c, "CLUSTER", "INFO"));
    assert.match(info, /^cluster_state:ok\r\n/);
    assert.match(info, /cluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n/);
    assert.match(info, /cluster_size:1\r\n/);
    assert.is(
      text(h.one(c, "CLUSTER", "NODES")),
      `${id} 198.18.8.1:6379@16379 myself,master - 0 0 0 connected 0-16383\n`,
    );
    assert.equal(text(h.one(c, "CLUSTER", "SLOTS")), [[0, 16383, ["198.18.8.1", 6379, id, []]]]);
    assert.equal(text(h.one(c, "CLUSTER", "SHARDS")), [
      [
        "slots",
        [0, 16383],
        "nodes",
        [
          [
            "id",
            id,
            "port",
            6379,
            "ip",
            "198.18.8.1",
            "endpoint",
            "198.18.8.1",
            "role",
            "master",
            "replication-offset",
            0,
            "health",
            "online",
          ],
        ],
      ],
    ]);

    // keys: one slot per command, or -CROSSSLOT
    assert.is(h.one(c, "SET", "foo", "1"), "+OK");
    assert.is(text(h.one(c, "GET", "foo")), "1");
    assert.is(h.one(c, "MSET", "foo", "1", "bar", "2"), "-CROSSSLOT Keys in request don't hash to the same slot");
    assert.is(h.one(c, "MSET", "{t}a", "1", "{t}b", "2", "{t}c", "3"), "+OK");
    assert.equal(text(h.one(c, "MGET", "{t}a", "{t}c")), ["1", "3"]);
    assert.is(h.one(c, "DEL", "{t}a", "bar"), "-CROSSSLOT Keys in request don't hash to the same slot");
    assert.is(h.one(c, "EXISTS", "foo", "foo"), 2, "the same key twice is one slot");
    assert.is(h.one(c, "CLUSTER", "KEYSLOT", "foo"), 12182);
    assert.is(h.one(c, "CLUSTER", "KEYSLOT", "{t}whatever"), slot("t"));
    assert.is(h.one(c, "CLUSTER", "COUNTKEYSINSLOT", String(slot("t"))), 3);
    assert.is(h.one(c, "CLUSTER", "COUNTKEYSINSLOT", "16384"), "-ERR Invalid slot");
    assert.is(h.one(c, "CLUSTER", "COUNTKEYSINSLOT", "x"), "-ERR value is not an integer or out of range");
    assert.equal(text(h.one(c, "CLUSTER", "GETKEYSINSLOT", String(slot("t")), "10")).sort(), ["{t}a", "{t}b", "{t}c"]);
    assert.is(text(h.one(c, "CLUSTER", "GETKEYSINSLOT", String(slot("t")), "2")).length, 2);
    assert.is(h.one(c, "CLUSTER", "GETKEYSINSLOT", "0", "-1"), "-ERR Invalid slot or number of keys");
    assert.is(h.one(c, "DEL", "{t}a", "{t}b"), 2);
    assert.equal(text(h.one(c, "CLUSTER", "GETKEYSINSLOT", String(slot("t")), "10")), ["{t}c"]);
    // expiry removes a key from its slot too
    assert.is(h.one(c, "SET", "{t}gone", "x", "PX", "100"), "+OK");
    assert.is(h.one(c, "CLUSTER", "COUNTKEYSINSLOT", String(slot("t"))), 2);
    h.clock.t += 1000;
    assert.is(h.one(c, "CLUSTER", "COUNTKEYSINSLOT", String(slot("t"))), 1);

    // a slot given up: its keys answer CLUSTERDOWN until a node serves it
    assert.is(h.one(c, "CLUSTER", "DELSLOTS", String(slot("foo"))), "+OK");
    assert.is(h.one(c, "GET", "foo"), "-CLUSTERDOWN Hash slot not served");
    assert.is(h.one(c, "GET", "{t}c"), "-CLUSTERDOWN The cluster is down", "a partly covered cluster serves nothing");
    assert.is(h.one(c, "CLUSTER", "ADDSLOTS", String(slot("foo"))), "+OK");
    assert.is(text(h.one(c, "GET", "foo")), "1");

    // the rest of CLUSTER
    assert.is(h.one(c, "SELECT", "1"), "-ERR SELECT is not allowed in cluster mode");
    assert.is(h.one(c, "SELECT", "0"), "+OK");
    assert.is(h.one(c, "ASKING"), "+OK");
    assert.is(text(h.one(c, "GET", "foo")), "1");
    assert.is(h.one(c, "READONLY"), "+OK");
    assert.is(h.one(c, "READWRITE"), "+OK");
    assert.is(h.one(c, "CLUSTER", "FLUSHSLOTS"), "-ERR DB must be empty to perform CLUSTER FLUSHSLOTS.");
    assert.is(h.one(c, "CLUSTER", "SET-CONFIG-EPOCH", "-1"), "-ERR Invalid config epoch specified: -1");
    assert.is(h.one(c, "CLUSTER", "SET-CONFIG-EPOCH", "7"), "+OK");
    assert.is(h.one(c, "CLUSTER", "SET-CONFIG-EPOCH", "8"), "-ERR Node config epoch is already non-zero");
    assert.match(text(h.one(c, "CLUSTER", "INFO")), /cluster_current_epoch:7\r\ncluster_my_epoch:7\r\n/);
    assert.is(h.one(c, "CLUSTER", "BUMPEPOCH"), "+STILL 7", "the greatest epoch, shared with no one");
    assert.is(h.one(c, "CLUSTER", "SAVECONFIG"), "+OK");
    assert.is(h.one(c, "CLUSTER", "MEET", "nowhere", "6379"), "-ERR Invalid node address specified: nowhere:6379");
    assert.is(h.one(c, "CLUSTER", "MEET", "198.18.8.9", "x"), "-ERR Invalid base port specified: x");

    assert.is(
      h.one(c, "CLUSTER", "NODES", "x"),
      "-ERR unknown subcommand or wrong number of arguments for 'NODES'. Try CLUSTER HELP.",
    );
    const help = h.one(c, "CLUSTER", "HELP");
    assert.ok(help.length > 10 && help.every((l) => l.startsWith("+")));
    assert.is(h.one(c, "CLUSTER"), "-ERR wrong number of arguments for 'cluster' command");

    // the configuration was saved at each change, in Redis's nodes.conf format
    assert.is(config.saves, 7, "made, 4 slot changes, the epoch, SAVECONFIG");
    assert.is(
      config.text,
      `${id} 198.18.8.1:6379@16379 myself,master - 0 0 7 connected 0-16383\nvars currentEpoch 7 lastVoteEpoch 0\n`,
    );
  } finally {
    h.close();
  }
});

test("keys of another node's slots answer -MOVED with its address; a reopen keeps each slot's keys", () => {
  const me = "a".repeat(40);
  const other = "b".repeat(40);
  const config = memConfig(
    `${other} 198.18.8.7:7000@17000 master - 0 0 2 connected 0-8191\n` +
      `${me} 198.18.8.1:6379@16379 myself,master - 0 0 1 connected 8192-16383\n` +
      "vars currentEpoch 2 lastVoteEpoch 0\n",
  );
  const path = join(scratchDir("tmpfs"), "cluster-moved.pm");
  const keys = [];
  {
    const h = kvPair({ path, cluster: new ClusterState({ ip: "198.18.8.1", port: 6379, config }) });
    try {
      const c = h.connect();
      assert.is(text(h.one(c, "CLUSTER", "MYID")), me);
      assert.match(
        text(h.one(c, "CLUSTER", "INFO")),
        /cluster_state:ok\r\n[^]*cluster_known_nodes:2\r\ncluster_size:2\r\ncluster_current_epoch:2\r\ncluster_my_epoch:1\r\n/,
      );
      assert.is(h.one(c, "GET", "bar"), "-MOVED 5061 198.18.8.7:7000", "bar is slot 5061, served by the other node");
      assert.is(h.one(c, "SET", "bar", "x"), "-MOVED 5061 198.18.8.7:7000");
      assert.is(h.one(c, "SET", "foo", "here"), "+OK", "foo is slot 12182: here");
      assert.equal(text(h.one(c, "CLUSTER", "SLOTS")), [
        [0, 8191, ["198.18.8.7", 7000, other, []]],
        [8192, 16383, ["198.18.8.1", 6379, me, []]],
      ]);
      assert.is(
        text(h.one(c, "CLUSTER", "NODES")),
        `${other} 198.18.8.7:7000@17000 master - 0 0 2 disconnected 0-8191\n` +
          `${me} 198.18.8.1:6379@16379 myself,master - 0 0 1 connected 8192-16383\n`,
      );
      assert.is(
        h.one(c, "CLUSTER", "SET-CONFIG-EPOCH", "3"),
        "-ERR The user can assign a config epoch only when the node does not know any other node.",
      );
      assert.is(h.one(c, "CLUSTER", "BUMPEPOCH"), "+BUMPED 3", "another node had a greater epoch");
      for (let i = 0; i < 300; i++) {
        const k = `k${i}`;
        const r = h.one(c, "SET", k, `v${i}`);
        if (slot(k) < 8192) assert.is(r, `-MOVED ${slot(k)} 198.18.8.7:7000`);
        else {
          assert.is(r, "+OK");
          keys.push(k);
        }
      }
      assert.is(h.app.stats.moved, 2 + 300 - keys.length);
    } finally {
      h.close();
    }
  }
  // a restart: the same node (id, epochs, slots) and each slot's keys, from the pool's log
  const h = kvPair({ path, cluster: new ClusterState({ ip: "198.18.8.1", port: 6379, config }) });
  try {
    const c = h.connect();
    assert.is(text(h.one(c, "CLUSTER", "MYID")), me);
    assert.match(text(h.one(c, "CLUSTER", "INFO")), /cluster_current_epoch:3\r\ncluster_my_epoch:3\r\n/);
    for (const k of keys.slice(0, 50)) {
      assert.is(h.one(c, "CLUSTER", "COUNTKEYSINSLOT", String(slot(k))) >= 1, true);
      assert.ok(text(h.one(c, "CLUSTER", "GETKEYSINSLOT", String(slot(k)), "1000")).includes(k));
    }
    assert.is(text(h.one(c, "GET", keys[0])), `v${keys[0].slice(1)}`);
  } finally {
    h.close();
  }
});

test("the configuration file: written atomically, read back on a restart, a damaged one refused naming its line", () => {
  const dir = scratchDir("tmpfs");
  const file = join(dir, "node.nodes.conf");
  const a = new ClusterState({ ip: "198.18.8.1", port: 6379, config: clusterConfigFile(file) });
  assert.is(a.loaded, false);
  assert.is(a.assign([1, 2, 3, 100], false), null);
  assert.is(a.setConfigEpoch(5), null);
  const saved = readFileSync(file, "latin1");
  assert.is(
    saved,
    `${a.myself.id} 198.18.8.1:6379@16379 myself,master - 0 0 5 connected 1-3 100\nvars currentEpoch 5 lastVoteEpoch 0\n`,
  );
  // a restart on another address keeps the id, the epochs and the slots, and takes the new address
  const b = new ClusterState({ ip: "198.18.8.3", port: 7001, config: clusterConfigFile(file) });
  assert.is(b.loaded, true);
  assert.is(b.myself.id, a.myself.id);
  assert.is(b.myself.configEpoch, 5);
  assert.is(b.currentEpoch, 5);
  assert.is(b.assigned, 4);
  assert.is(b.owner(100), b.myself);
  assert.is(b.owner(4), null);
  assert.match(b.nodesText(), / 198\.18\.8\.3:7001@17001 /);

  const damaged = [
    [saved.replace(/vars.*\n/, ""), /no "vars" line/],
    [saved.replace("1-3", "3-1"), /line 1: bad slot range "3-1"/],
    [saved.replace(" myself,master", " master"), /no line has the "myself" flag/],
    [saved.replace(a.myself.id, "xyz"), /line 1: bad node id "xyz"/],
    [`${saved.split("\n")[0]}\n${saved}`, /line 2: node [0-9a-f]{40} appears twice/],
    [saved.replace(" 0 0 5 ", " 0 0 -5 "), /line 1: bad config epoch "-5"/],
  ];
  for (const [t, why] of damaged) {
    writeFileSync(file, t);
    try {
      new ClusterState({ ip: "198.18.8.1", port: 6379, config: clusterConfigFile(file) });
      assert.unreachable("a damaged configuration is refused");
    } catch (e) {
      assert.instance(e, ClusterConfigError);
      assert.match(e.message, file);
      assert.match(e.message, why);
    }
  }
  assert.throws(() => new ClusterState({ ip: "198.18.8.1", port: 60000 }), /client port must be 1 to 55535/);
});

test("DUMP and RESTORE speak Redis's payloads: plain, integer and LZF strings, TTLs, and Redis's errors", () => {
  const h = kvPair();
  try {
    const c = h.connect();
    const hex = (x) => Uint8Array.from(Buffer.from(x, "hex"));
    // payloads redis-server 7.0 wrote: "hello", 10 (integer-encoded), and an LZF-compressed string
    const hello = hex("000568656c6c6f0a006372df766534200a");
    const ten = hex("00c00a0a006e9f57450eae63bb");
    const lzf = hex("00c30e4070016161e03f000062e01a000162620a0037556eba8c7eda7e");
    assert.is(h.one(c, "SET", "k", "hello"), "+OK");
    assert.equal([...h.one(c, "DUMP", "k")], [...hello], "DUMP writes what Redis writes");
    assert.is(h.one(c, "DUMP", "nope"), null);
    assert.is(h.one(c, "RESTORE", "r1", "0", hello), "+OK");
    assert.is(text(h.one(c, "GET", "r1")), "hello");
    assert.is(h.one(c, "RESTORE", "r2", "0", ten), "+OK");
    assert.is(text(h.one(c, "GET", "r2")), "10");
    assert.is(h.one(c, "RESTORE", "r3", "0", lzf), "+OK");
    assert.is(text(h.one(c, "GET", "r3")), "a".repeat(74) + "b".repeat(38));
    // errors, in Redis's order and words
    assert.is(h.one(c, "RESTORE", "r1", "0", hello), "-BUSYKEY Target key name already exists.");
    assert.is(h.one(c, "RESTORE", "r1", "0", ten, "REPLACE"), "+OK");
    assert.is(text(h.one(c, "GET", "r1")), "10");
    assert.is(h.one(c, "RESTORE", "r4", "-1", hello), "-ERR Invalid TTL value, must be >= 0");
    assert.is(h.one(c, "RESTORE", "r4", "x", hello), "-ERR value is not an integer or out of range");
    const badCrc = hello.slice();
    badCrc[3] ^= 1;
    assert.is(h.one(c, "RESTORE", "r4", "0", badCrc), "-ERR DUMP payload version or checksum are wrong");
    assert.is(h.one(c, "RESTORE", "r4", "0", "short"), "-ERR DUMP payload version or checksum are wrong");
    assert.is(h.one(c, "RESTORE", "r4", "0", hello, "BOGUS"), "-ERR syntax error");
    assert.is(h.one(c, "RESTORE", "r4", "0", hello, "IDLETIME", "-1"), "-ERR Invalid IDLETIME value, must be >= 0");
    assert.is(h.one(c, "RESTORE", "r4", "0", hello, "FREQ", "256"), "-ERR Invalid FREQ value, must be >= 0 and <= 255");
    // a list (type 1) is not a string: this store has strings only
    assert.is(h.one(c, "RESTORE", "r4", "0", dumpOf([1, 1, 1, 0x61])), "-ERR Bad data format");
    // TTLs: relative, absolute (ABSTTL), already expired
    assert.is(h.one(c, "RESTORE", "t1", "5000", hello, "IDLETIME", "3", "FREQ", "7"), "+OK");
    assert.is(h.one(c, "PTTL", "t1"), 5000);
    assert.is(h.one(c, "RESTORE", "t2", String(h.clock.t + 9000), hello, "ABSTTL"), "+OK");
    assert.is(h.one(c, "PTTL", "t2"), 9000);
    assert.is(h.one(c, "RESTORE", "t3", String(h.clock.t - 1), hello, "ABSTTL"), "+OK");
    assert.is(h.one(c, "EXISTS", "t3"), 0, "restored already expired: not there");
    // a long value round-trips through DUMP and RESTORE byte-exact
    const big = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
    assert.is(h.one(c, "SET", "big", big), "+OK");
    const d = h.one(c, "DUMP", "big");
    assert.is(h.one(c, "RESTORE", "big2", "0", d), "+OK");
    assert.equal([...h.one(c, "GET", "big2")].length, big.length);
    assert.ok(Buffer.from(h.one(c, "GET", "big2")).equals(Buffer.from(big)));
    assert.is(h.one(c, "RESTORE-ASKING", "ra", "0", hello), "+OK", "RESTORE-ASKING is RESTORE");
    assert.is(h.one(c, "MIGRATE", "198.18.8.2", "6379", "", "0", "100", "KEYS", "nope"), "+NOKEY");
    assert.is(
      h.one(c, "MIGRATE", "198.18.8.2", "6379", "k", "0", "100", "KEYS", "r1"),
      "-ERR When using MIGRATE KEYS option, the key argument must be set to the empty string",
    );
  } finally {
    h.close();
  }
});

/** A DUMP payload around `body` (RDB version 10, its CRC-64 computed as Redis does). */
function dumpOf(body) {
  const b = Uint8Array.from([...body, 10, 0]);
  const crc = crc64(b);
  const out = new Uint8Array(b.length + 8);
  out.set(b);
  new DataView(out.buffer).setBigUint64(b.length, crc, true);
  return out;
}

test.run();
