/*
 * pmstack_nic module: argument checking, the handle, readiness (libuv poll) and counters.
 * The backends are tap.c and xdp.c. Functions (docs/nic.md has the formats):
 *   tapOpen(memory, view, bufBase, bufCount, name, flags, netns) -> handle
 *   xdpOpen(memory, view, bufBase, bufCount, ifname, queue, flags, ringSize, netns, medium) -> handle
 *   info(handle) -> {kind, fd, ifname, copies, ...}
 *   rx(handle, ringOff, metaOff, fillOff) -> frames received (ring slots written; fill table popped)
 *   tx(handle, ringOff, metaOff, doneOff) -> frames sent (ring slots consumed; done table appended)
 *   stats(handle) -> counters (syscalls, frames, bytes, drops by reason)
 *   pollStart(handle, callback(events)), pollStop(handle): readiness through the Node event loop
 *   pollRef(handle, ref): whether that readiness keeps the event loop alive (uv_ref / uv_unref)
 *   close(handle) -> Uint32Array of buffer indices the kernel still held (now released to the host)
 */
#include "nic.h"

#include <dlfcn.h>
#include <linux/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const napi_type_tag NIC_TAG = {0x706d737461636b5fULL, 0x6e69632d68616e64ULL};

#define CHECK(call)                                                                                                    \
  do {                                                                                                                 \
    if ((call) != napi_ok) return nic_napi_fail(env, #call);                                                           \
  } while (0)

static napi_value nic_napi_fail(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) nic_throw(env, "EIO", "pmstack: Node-API call failed: %s", what);
  return NULL;
}

const char *nic_errname(int e) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
  const char *n = strerrorname_np(e);
  if (n) return n;
#endif
  return "EIO";
}

static napi_value vthrow(napi_env env, const char *code, const char *fmt, va_list ap) {
  char msg[1024];
  int k = vsnprintf(msg, sizeof msg - 32, fmt, ap);
  if (k < 0) k = 0;
  if ((size_t)k > sizeof msg - 32) k = sizeof msg - 32;
  snprintf(msg + k, sizeof msg - k, " (%s)", code);
  napi_value c, m, err;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) == napi_ok &&
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) == napi_ok && napi_create_error(env, c, m, &err) == napi_ok)
    napi_throw(env, err);
  return NULL;
}

napi_value nic_throw(napi_env env, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vthrow(env, code, fmt, ap);
  va_end(ap);
  return NULL;
}

napi_value nic_throw_sys(napi_env env, int err, const char *fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return nic_throw(env, nic_errname(err), "%s: %s", msg, strerror(err));
}

/* Enters the network namespace at `path` for the calling thread only (setns), remembering the
 * current one in *saved; nic_leave_netns goes back. 0, or an errno with `*step` saying what
 * failed (1: opening this thread's namespace, 2: opening `path`, 3: setns). NULL/empty path:
 * nothing to do. */
int nic_netns_switch(const char *path, int *saved, int *step) {
  *saved = -1;
  if (!path || !*path) return 0;
  int old = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (old < 0) return *step = 1, errno;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    close(old);
    return *step = 2, e;
  }
  if (setns(fd, CLONE_NEWNET)) {
    int e = errno;
    close(fd);
    close(old);
    return *step = 3, e;
  }
  close(fd);
  *saved = old;
  return 0;
}

/* nic_netns_switch, its failure thrown as a JS error. */
int nic_enter_netns(napi_env env, const char *path, int *saved) {
  int step = 0;
  int e = nic_netns_switch(path, saved, &step);
  if (!e) return 0;
  if (step == 1) nic_throw_sys(env, e, "pmstack: cannot open this thread's network namespace");
  else if (step == 2) nic_throw_sys(env, e, "pmstack: cannot open network namespace %s", path);
  else nic_throw_sys(env, e, "pmstack: cannot enter network namespace %s (needs CAP_SYS_ADMIN)", path);
  return -1;
}

/* Loads an eBPF program; on failure loads it again with the verifier's log into `log` (a log too
 * small for a program that passes fails the load with ENOSPC: none the first time). The fd, or
 * -1 with errno set. */
int nic_bpf_load(uint32_t type, const struct bpf_insn *insns, uint32_t count, const char *name, char *log,
                 size_t log_size) {
  static char license[] = "GPL";
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = type;
  a.insns = (uint64_t)(uintptr_t)insns;
  a.insn_cnt = count;
  a.license = (uint64_t)(uintptr_t)license;
  snprintf(a.prog_name, sizeof a.prog_name, "%s", name);
  log[0] = 0;
  int fd = (int)syscall(__NR_bpf, BPF_PROG_LOAD, &a, sizeof a);
  if (fd < 0) {
    a.log_buf = (uint64_t)(uintptr_t)log;
    a.log_size = (uint32_t)log_size;
    a.log_level = 1;
    fd = (int)syscall(__NR_bpf, BPF_PROG_LOAD, &a, sizeof a);
  }
  return fd;
}

void nic_leave_netns(int saved) {
  if (saved < 0) return;
  if (setns(saved, CLONE_NEWNET)) {
    /* The main thread would stay in the test's namespace: refuse to go on. */
    fprintf(stderr, "pmstack: cannot return to the original network namespace: %s\n", strerror(errno));
    abort();
  }
  close(saved);
}

/* ---------- arguments ---------- */

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return nic_napi_fail(env, "get_cb_info"), -1;
  if (argc < want) return nic_throw(env, "EINVAL", "pmstack: %s expects %zu arguments, got %zu", fn, want, argc), -1;
  return 0;
}

static int arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok)
    return nic_throw(env, "ERR_INVALID_ARG_TYPE", "pmstack: %s must be a number", what), -1;
  if (!(d >= 0 && d <= 4294967295.0) || d != floor(d))
    return nic_throw(env, "EINVAL", "pmstack: %s must be an integer in [0, 2^32), got %g", what, d), -1;
  *out = (uint32_t)d;
  return 0;
}

static int arg_str(napi_env env, napi_value v, const char *what, char *buf, size_t size) {
  size_t len;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_undefined || t == napi_null) {
    buf[0] = 0;
    return 0;
  }
  if (t != napi_string) return nic_throw(env, "ERR_INVALID_ARG_TYPE", "pmstack: %s must be a string", what), -1;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok) return -1;
  if (len >= size - 1) return nic_throw(env, "EINVAL", "pmstack: %s is too long", what), -1;
  return 0;
}

/* memory.buffer through the real WebAssembly.Memory.prototype getter: anything else is refused. */
static int memory_buffer(napi_env env, napi_value memory, napi_value *buf) {
  napi_value g, wa, ctor, proto, object, gopd, args[2], desc, getter, exc;
  if (napi_get_global(env, &g) != napi_ok || napi_get_named_property(env, g, "WebAssembly", &wa) != napi_ok ||
      napi_get_named_property(env, wa, "Memory", &ctor) != napi_ok ||
      napi_get_named_property(env, ctor, "prototype", &proto) != napi_ok ||
      napi_get_named_property(env, g, "Object", &object) != napi_ok ||
      napi_get_named_property(env, object, "getOwnPropertyDescriptor", &gopd) != napi_ok)
    return nic_napi_fail(env, "WebAssembly.Memory lookup"), -1;
  args[0] = proto;
  if (napi_create_string_utf8(env, "buffer", NAPI_AUTO_LENGTH, &args[1]) != napi_ok ||
      napi_call_function(env, object, gopd, 2, args, &desc) != napi_ok ||
      napi_get_named_property(env, desc, "get", &getter) != napi_ok)
    return nic_napi_fail(env, "Memory.prototype.buffer"), -1;
  if (napi_call_function(env, memory, getter, 0, NULL, buf) != napi_ok) {
    napi_get_and_clear_last_exception(env, &exc);
    return nic_throw(env, "ERR_INVALID_ARG_TYPE", "pmstack: memory must be a WebAssembly.Memory"), -1;
  }
  return 0;
}

/* Validates (memory, view = new Uint8Array(memory.buffer), bufBase, bufCount) into n. */
static int attach_memory(napi_env env, napi_value *argv, nic_t *n) {
  napi_value buf, ab;
  bool is = false, same = false;
  napi_typedarray_type t;
  size_t len, off;
  void *p;
  if (memory_buffer(env, argv[0], &buf)) return -1;
  if (napi_is_typedarray(env, argv[1], &is) != napi_ok) return -1;
  if (is && napi_get_typedarray_info(env, argv[1], &t, &len, &p, &ab, &off) != napi_ok) return -1;
  if (!is || t != napi_uint8_array)
    return nic_throw(env, "ERR_INVALID_ARG_TYPE", "pmstack: view must be a Uint8Array"), -1;
  if (napi_strict_equals(env, buf, ab, &same) != napi_ok) return -1;
  if (!same || off != 0) return nic_throw(env, "EINVAL", "pmstack: view must be new Uint8Array(memory.buffer)"), -1;
  uint32_t bb, bc;
  if (arg_u32(env, argv[2], "bufBase", &bb) || arg_u32(env, argv[3], "bufCount", &bc)) return -1;
  if (bc == 0 || bb % 4096 || (uint64_t)bb + ((uint64_t)bc << BUF_SHIFT) > len)
    return nic_throw(env, "EINVAL", "pmstack: buffer region [%u, +%u*2048) must be page-aligned and inside the memory (%zu bytes)",
                     bb, bc, len),
           -1;
  n->base = p;
  n->mem_size = len;
  n->buf_base = bb;
  n->buf_count = bc;
  return 0;
}

static void nic_release(nic_t *n) {
  if (n->x) xdp_close(n);
  if (n->tb) tap_close(n);
  if (n->fd >= 0) close(n->fd);
  n->fd = -1;
  n->closed = true;
}

static void poll_closed(uv_handle_t *h) { free(h); }

static void stop_poll(napi_env env, nic_t *n) {
  if (n->poll) {
    uv_poll_stop(n->poll);
    uv_close((uv_handle_t *)n->poll, poll_closed);
    n->poll = NULL;
  }
  if (n->cb_ref) napi_delete_reference(env, n->cb_ref);
  n->cb_ref = NULL;
  if (n->self_ref) napi_delete_reference(env, n->self_ref);
  n->self_ref = NULL;
  if (n->actx) napi_async_destroy(env, n->actx);
  n->actx = NULL;
}

/* The environment (a worker thread ending, or the process) is going away with the queue open:
 * its poll handle is closed (a libuv loop must close with no handle left) and the queue too, as
 * close() would. The handle's finalizer frees the rest. */
static void nic_env_cleanup(void *arg) {
  nic_t *n = arg;
  n->hooked = false;
  if (n->poll) {
    uv_poll_stop(n->poll);
    uv_close((uv_handle_t *)n->poll, poll_closed);
    n->poll = NULL;
  }
  nic_release(n);
}

static void nic_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  nic_t *n = data;
  if (n->hooked) napi_remove_env_cleanup_hook(env, nic_env_cleanup, n);
  /* A polling handle is held by self_ref, so it is never collected while polling. */
  nic_release(n);
  if (n->mem_ref) napi_delete_reference(env, n->mem_ref);
  free(n->x);
  free(n);
}

static nic_t *nic_of(napi_env env, napi_value v, bool live) {
  bool ok = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, v, &NIC_TAG, &ok) != napi_ok || !ok || napi_get_value_external(env, v, &p) != napi_ok)
    return nic_throw(env, "ERR_INVALID_ARG_TYPE", "pmstack: not a NIC handle"), NULL;
  nic_t *n = p;
  if (live && n->closed) return nic_throw(env, "EBADF", "pmstack: the NIC queue %s is closed", n->ifname), NULL;
  return n;
}

static napi_value make_handle(napi_env env, nic_t *n, napi_value memory) {
  napi_value h;
  if (napi_create_external(env, n, nic_finalize, NULL, &h) != napi_ok) {
    nic_release(n);
    free(n->x);
    free(n);
    return nic_napi_fail(env, "create_external");
  }
  CHECK(napi_type_tag_object(env, h, &NIC_TAG));
  CHECK(napi_create_reference(env, memory, 1, &n->mem_ref));
  n->env = env;
  n->hooked = napi_add_env_cleanup_hook(env, nic_env_cleanup, n) == napi_ok;
  return h;
}

static napi_value nic_tap_open(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  char name[IF_NAMESIZE + 1], ns[PATH_MAX];
  uint32_t flags;
  if (get_args(env, info, 7, argv, "tapOpen")) return NULL;
  nic_t *n = calloc(1, sizeof *n);
  if (!n) return nic_throw_sys(env, ENOMEM, "pmstack: tapOpen");
  n->fd = -1;
  n->kind = NIC_TAP;
  if (attach_memory(env, argv, n) || arg_str(env, argv[4], "name", name, sizeof name) ||
      arg_u32(env, argv[5], "flags", &flags) || arg_str(env, argv[6], "netns", ns, sizeof ns) ||
      tap_open(env, n, name, flags, ns)) {
    nic_release(n);
    free(n);
    return NULL;
  }
  return make_handle(env, n, argv[0]);
}

static napi_value nic_xdp_open(napi_env env, napi_callback_info info) {
  napi_value argv[13];
  char name[IF_NAMESIZE + 1], ns[PATH_MAX], medium[64], peer[IF_NAMESIZE + 1], peer_ns[PATH_MAX];
  uint32_t queue, flags, ring, steer_queues;
  if (get_args(env, info, 13, argv, "xdpOpen")) return NULL;
  nic_t *n = calloc(1, sizeof *n);
  if (!n) return nic_throw_sys(env, ENOMEM, "pmstack: xdpOpen");
  n->fd = -1;
  n->kind = NIC_XDP;
  if (attach_memory(env, argv, n) || arg_str(env, argv[4], "ifname", name, sizeof name) ||
      arg_u32(env, argv[5], "queue", &queue) || arg_u32(env, argv[6], "flags", &flags) ||
      arg_u32(env, argv[7], "ringSize", &ring) || arg_str(env, argv[8], "netns", ns, sizeof ns) ||
      arg_str(env, argv[9], "medium", medium, sizeof medium) ||
      arg_str(env, argv[10], "steerPeer", peer, sizeof peer) || arg_u32(env, argv[11], "steerQueues", &steer_queues) ||
      arg_str(env, argv[12], "steerNetns", peer_ns, sizeof peer_ns) ||
      xdp_open(env, n, name, queue, flags, ring, ns, medium, peer, steer_queues, peer_ns)) {
    nic_release(n);
    free(n->x);
    free(n);
    return NULL;
  }
  return make_handle(env, n, argv[0]);
}

/* ---------- rings and tables in the memory ---------- */

static int get_ring(napi_env env, nic_t *n, napi_value v, ring_t *r) {
  uint32_t off;
  if (arg_u32(env, v, "ringOff", &off)) return -1;
  if (off % 4 || (uint64_t)off + RING_HDR > n->mem_size) return nic_throw(env, "EINVAL", "pmstack: bad ring offset %u", off), -1;
  uint32_t mask = *(uint32_t *)(n->base + off);
  if ((mask & (mask + 1)) || mask > 65535 || (uint64_t)off + RING_HDR + ((uint64_t)mask + 1) * SLOT_SIZE > n->mem_size)
    return nic_throw(env, "EINVAL", "pmstack: no ring at offset %u (mask %u)", off, mask), -1;
  r->p = n->base + off;
  r->mask = mask;
  return 0;
}

static int get_meta(napi_env env, nic_t *n, napi_value v, const ring_t *r, uint8_t **meta) {
  uint32_t off;
  if (arg_u32(env, v, "metaOff", &off)) return -1;
  *meta = NULL;
  if (off == 0) return 0;
  if (off % 4 || (uint64_t)off + ((uint64_t)r->mask + 1) * META_SIZE > n->mem_size)
    return nic_throw(env, "EINVAL", "pmstack: bad metadata table offset %u", off), -1;
  *meta = n->base + off;
  return 0;
}

static int get_table(napi_env env, nic_t *n, napi_value v, const char *what, table_t *t) {
  uint32_t off;
  if (arg_u32(env, v, what, &off)) return -1;
  if (off % 4 || (uint64_t)off + 8 > n->mem_size) return nic_throw(env, "EINVAL", "pmstack: bad %s %u", what, off), -1;
  uint32_t *h = (uint32_t *)(n->base + off);
  if ((uint64_t)off + 8 + (uint64_t)h[1] * 4 > n->mem_size || h[0] > h[1])
    return nic_throw(env, "EINVAL", "pmstack: bad table at %s %u (count %u, capacity %u)", what, off, h[0], h[1]), -1;
  t->count = &h[0];
  t->cap = h[1];
  t->e = &h[2];
  return 0;
}

static napi_value nic_rx(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  nic_t *n;
  ring_t r;
  uint8_t *meta;
  table_t fill;
  if (get_args(env, info, 4, argv, "rx") || !(n = nic_of(env, argv[0], true)) || get_ring(env, n, argv[1], &r) ||
      get_meta(env, n, argv[2], &r, &meta) || get_table(env, n, argv[3], "fillOff", &fill))
    return NULL;
  int err = 0;
  n->st.rx_calls++;
  uint32_t k = n->kind == NIC_TAP ? tap_rx(n, &r, meta, &fill, &err) : xdp_rx(n, &r, &fill, &err);
  if (err && k == 0) return nic_throw_sys(env, err, "pmstack: receive on %s", n->ifname);
  CHECK(napi_create_uint32(env, k, &out));
  return out;
}

static napi_value nic_tx(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  nic_t *n;
  ring_t r;
  uint8_t *meta;
  table_t done;
  if (get_args(env, info, 4, argv, "tx") || !(n = nic_of(env, argv[0], true)) || get_ring(env, n, argv[1], &r) ||
      get_meta(env, n, argv[2], &r, &meta) || get_table(env, n, argv[3], "doneOff", &done))
    return NULL;
  int err = 0;
  n->st.tx_calls++;
  uint32_t k = n->kind == NIC_TAP ? tap_tx(n, &r, meta, &done, &err) : xdp_tx(n, &r, &done, &err);
  if (err && k == 0) return nic_throw_sys(env, err, "pmstack: send on %s", n->ifname);
  CHECK(napi_create_uint32(env, k, &out));
  return out;
}

#define SETNUM(o, name, val)                                                                                           \
  do {                                                                                                                 \
    napi_value v_;                                                                                                     \
    CHECK(napi_create_double(env, (double)(val), &v_));                                                                \
    CHECK(napi_set_named_property(env, o, name, v_));                                                                  \
  } while (0)
#define SETSTR(o, name, val)                                                                                           \
  do {                                                                                                                 \
    napi_value v_;                                                                                                     \
    CHECK(napi_create_string_utf8(env, val, NAPI_AUTO_LENGTH, &v_));                                                   \
    CHECK(napi_set_named_property(env, o, name, v_));                                                                  \
  } while (0)
#define SETBOOL(o, name, val)                                                                                          \
  do {                                                                                                                 \
    napi_value v_;                                                                                                     \
    CHECK(napi_get_boolean(env, val, &v_));                                                                            \
    CHECK(napi_set_named_property(env, o, name, v_));                                                                  \
  } while (0)

static napi_value nic_stats_fn(napi_env env, napi_callback_info info) {
  napi_value argv[1], o;
  nic_t *n;
  if (get_args(env, info, 1, argv, "stats") || !(n = nic_of(env, argv[0], false))) return NULL;
  CHECK(napi_create_object(env, &o));
  nic_stats *s = &n->st;
  SETNUM(o, "syscalls", s->syscalls);
  SETNUM(o, "rxCalls", s->rx_calls);
  SETNUM(o, "txCalls", s->tx_calls);
  SETNUM(o, "rxFrames", s->rx_frames);
  SETNUM(o, "rxSlots", s->rx_slots);
  SETNUM(o, "rxBytes", s->rx_bytes);
  SETNUM(o, "txFrames", s->tx_frames);
  SETNUM(o, "txSlots", s->tx_slots);
  SETNUM(o, "txBytes", s->tx_bytes);
  SETNUM(o, "rxEagain", s->rx_eagain);
  SETNUM(o, "rxNoRoom", s->rx_no_room);
  SETNUM(o, "rxErrors", s->rx_errors);
  SETNUM(o, "rxBad", s->rx_bad);
  SETNUM(o, "txEagain", s->tx_eagain);
  SETNUM(o, "txErrors", s->tx_errors);
  SETNUM(o, "txDropped", s->tx_dropped);
  SETNUM(o, "txCopiedBytes", s->tx_copied_bytes);
  SETNUM(o, "rxCopiedBytes", s->rx_copied_bytes);
  SETNUM(o, "kicks", s->kicks);
  SETNUM(o, "wakeups", s->wakeups);
  SETNUM(o, "polls", s->polls);
  if (n->kind == NIC_XDP && !n->closed) {
    /* what the kernel dropped before our RX ring (diagnostics: one getsockopt, not counted in syscalls) */
    uint64_t k[6];
    if (xdp_kernel_stats(n, k) == 0) {
      napi_value ko;
      CHECK(napi_create_object(env, &ko));
      SETNUM(ko, "rxDropped", k[0]);
      SETNUM(ko, "rxInvalidDescs", k[1]);
      SETNUM(ko, "txInvalidDescs", k[2]);
      SETNUM(ko, "rxRingFull", k[3]);
      SETNUM(ko, "rxFillRingEmpty", k[4]);
      SETNUM(ko, "txRingEmpty", k[5]);
      CHECK(napi_set_named_property(env, o, "xdpKernel", ko));
    }
  }
  return o;
}

static napi_value nic_info(napi_env env, napi_callback_info info) {
  napi_value argv[1], o;
  nic_t *n;
  if (get_args(env, info, 1, argv, "info") || !(n = nic_of(env, argv[0], false))) return NULL;
  CHECK(napi_create_object(env, &o));
  SETSTR(o, "kind", n->kind == NIC_TAP ? "tap" : "xdp");
  SETNUM(o, "fd", n->fd);
  SETSTR(o, "ifname", n->ifname);
  SETSTR(o, "copies", n->copies);
  SETBOOL(o, "closed", n->closed);
  if (n->kind == NIC_TAP) {
    SETNUM(o, "vnetHdrSize", n->vnet_sz);
    SETBOOL(o, "offload", n->offload);
    SETBOOL(o, "uso", n->uso);
    SETNUM(o, "rxNeed", n->rx_need);
    SETSTR(o, "batch", n->batch);
    if (n->steer[0]) SETSTR(o, "steering", n->steer);
  } else if (n->x && !xdp_info(env, n, o))
    return NULL;
  return o;
}

/* ---------- readiness ---------- */

static void on_poll(uv_poll_t *h, int status, int events) {
  nic_t *n = h->data;
  napi_env env = n->env;
  napi_handle_scope scope;
  napi_value cb, recv, arg, res;
  n->st.polls++;
  if (!n->cb_ref || napi_open_handle_scope(env, &scope) != napi_ok) return;
  if (napi_get_reference_value(env, n->cb_ref, &cb) == napi_ok && cb && napi_get_global(env, &recv) == napi_ok &&
      napi_create_int32(env, status < 0 ? status : events, &arg) == napi_ok) {
    if (napi_make_callback(env, n->actx, recv, cb, 1, &arg, &res) != napi_ok) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value exc;
        napi_get_and_clear_last_exception(env, &exc);
        napi_fatal_exception(env, exc);
      }
    }
  }
  napi_close_handle_scope(env, scope);
  /* Node's libuv poll stays armed (epoll, level-triggered), and uv_poll_start on an active
   * handle would delete and re-add the fd (two epoll_ctl calls per wake-up): re-arm only where
   * the host's poll is one-shot (Deno's), as pollStart was told. */
  if (n->poll == h && !n->closed && n->poll_rearm) uv_poll_start(h, n->poll_events, on_poll);
}

/* pollStart(handle, callback, writable?, rearm?): calls callback(events) from the event loop
 * whenever the fd is readable (UV_READABLE = 1; with writable, also UV_WRITABLE = 2); negative:
 * a libuv error. rearm: the host's poll is one-shot (Deno): start it again after each callback. */
static napi_value nic_poll_start(napi_env env, napi_callback_info info) {
  napi_value argv[4], name;
  nic_t *n;
  bool wr = false, rearm = false;
  size_t argc = 4;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return nic_throw(env, "EINVAL", "pmstack: pollStart(handle, callback)");
  if (!(n = nic_of(env, argv[0], true))) return NULL;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[1], &t));
  if (t != napi_function) return nic_throw(env, "ERR_INVALID_ARG_TYPE", "pmstack: callback must be a function");
  if (argc > 2) napi_get_value_bool(env, argv[2], &wr);
  if (argc > 3) napi_get_value_bool(env, argv[3], &rearm);
  stop_poll(env, n);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  uv_poll_t *p = calloc(1, sizeof *p);
  if (!p) return nic_throw_sys(env, ENOMEM, "pmstack: pollStart");
  int e = uv_poll_init(loop, p, n->fd);
  if (e) {
    free(p);
    return nic_throw(env, uv_err_name(e), "pmstack: cannot poll %s: %s", n->ifname, uv_strerror(e));
  }
  p->data = n;
  n->poll = p;
  CHECK(napi_create_string_utf8(env, "pmstack:nic", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &n->actx));
  CHECK(napi_create_reference(env, argv[1], 1, &n->cb_ref));
  CHECK(napi_create_reference(env, argv[0], 1, &n->self_ref));
  n->poll_events = UV_READABLE | (wr ? UV_WRITABLE : 0);
  n->poll_rearm = rearm;
  e = uv_poll_start(p, n->poll_events, on_poll);
  if (e) {
    stop_poll(env, n);
    return nic_throw(env, uv_err_name(e), "pmstack: cannot poll %s: %s", n->ifname, uv_strerror(e));
  }
  if (n->poll_unref) uv_unref((uv_handle_t *)p);
  return NULL;
}

/* pollRef(handle, ref): ref (the default) keeps the event loop alive while the poll runs, as
 * any libuv handle does; !ref lets the process exit while nothing else holds it (uv_unref).
 * Applies to the running poll and to later pollStart calls. */
static napi_value nic_poll_ref(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  nic_t *n;
  bool ref = true;
  if (get_args(env, info, 2, argv, "pollRef") || !(n = nic_of(env, argv[0], false))) return NULL;
  CHECK(napi_get_value_bool(env, argv[1], &ref));
  n->poll_unref = !ref;
  if (n->poll) {
    if (ref) uv_ref((uv_handle_t *)n->poll);
    else uv_unref((uv_handle_t *)n->poll);
  }
  return NULL;
}

static napi_value nic_poll_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  nic_t *n;
  if (get_args(env, info, 1, argv, "pollStop") || !(n = nic_of(env, argv[0], false))) return NULL;
  stop_poll(env, n);
  return NULL;
}

static napi_value nic_close(napi_env env, napi_callback_info info) {
  napi_value argv[1], ab, arr;
  nic_t *n;
  if (get_args(env, info, 1, argv, "close") || !(n = nic_of(env, argv[0], false))) return NULL;
  uint32_t k = 0;
  uint32_t *tmp = NULL;
  if (!n->closed) {
    stop_poll(env, n);
    if (n->x) {
      tmp = malloc(sizeof(uint32_t) * n->buf_count);
      if (tmp) k = xdp_outstanding(n, tmp, n->buf_count);
    }
    nic_release(n);
    if (n->mem_ref) napi_delete_reference(env, n->mem_ref);
    n->mem_ref = NULL;
  }
  void *data;
  napi_status s = napi_create_arraybuffer(env, (size_t)k * 4, &data, &ab);
  if (s == napi_ok && k) memcpy(data, tmp, (size_t)k * 4);
  free(tmp);
  CHECK(s);
  CHECK(napi_create_typedarray(env, napi_uint32_array, k, ab, 0, &arr));
  return arr;
}

/* Keeps this library loaded for the rest of the process: a worker thread that loaded it may end
 * with a queue's poll handle still closing (nic_env_cleanup), and libuv calls the close callback,
 * ours, after Node has let go of the module. */
static void pin_self(void) {
  Dl_info di;
  if (dladdr((void *)pin_self, &di) && di.dli_fname) dlopen(di.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

NAPI_MODULE_INIT() {
  pin_self();
  napi_property_descriptor d[] = {
      {"tapOpen", NULL, nic_tap_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"xdpOpen", NULL, nic_xdp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"info", NULL, nic_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rx", NULL, nic_rx, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tx", NULL, nic_tx, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, nic_stats_fn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pollStart", NULL, nic_poll_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pollStop", NULL, nic_poll_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pollRef", NULL, nic_poll_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, nic_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof d / sizeof d[0], d) != napi_ok) return NULL;
  return exports;
}
