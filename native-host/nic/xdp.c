/*
 * AF_XDP backend with raw syscalls (no libbpf/libxdp). The UMEM is the PM pool's buffer
 * region itself (chunk 2048 = one pmstack buffer), so buffer index = UMEM address / 2048.
 * A 5-instruction XDP program redirects every frame to the socket of its queue through an
 * XSKMAP; it is attached with BPF_LINK_CREATE (native mode, skb mode as fallback) and
 * detached when the link fd is closed (close() or process exit). One device has one program
 * and one map in this process, shared by the sockets of its queues (one per worker thread):
 * each socket adds itself to the map at its queue, and the last one to close detaches.
 *
 * Steering (a veth pair served by several workers): the kernel picks the receiving queue of a
 * veth frame when its other end sends it. An egress program on that end (tcx) sets each
 * frame's queue from the steering hash of its addresses and ports (steer.h), as the TAP
 * device's steering program does, so a connection stays on one worker and a worker can choose
 * local ports whose replies come back to it.
 */
#include "nic.h"
#include "steer.h"

#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

typedef struct {
  uint32_t *prod, *cons, *flags;
  void *desc;
  uint32_t size, mask;
  void *map;
  size_t map_len;
} xring;

/* enum bpf_attach_type's BPF_TCX_EGRESS (Linux 6.6), which older headers lack. */
#define ATTACH_TCX_EGRESS 47

/* Queues one device's map holds: the XSKMAP's size (a queue index must be below it). */
#define XSK_QUEUES 1024u

/* One device's XDP program and map in this process, shared by the sockets of its queues. */
typedef struct xdp_dev {
  struct xdp_dev *next;
  uint64_t ns_dev, ns_ino; /* the network namespace */
  unsigned ifindex;
  int map_fd, prog_fd, link_fd;
  int steer_fd; /* the egress program's link on the veth peer (-1: none) */
  const char *mode;
  char steer[200]; /* how frames find their queue */
  uint32_t refs;
} xdp_dev;

static pthread_mutex_t devs_lock = PTHREAD_MUTEX_INITIALIZER;
static xdp_dev *devs;

struct xdp_state {
  xring fill, comp, rx, tx;
  xdp_dev *dev;
  uint32_t ring_size, queue, bind_retries;
  const char *bind;
  uint8_t *held; /* bitmap: buffers the kernel holds (FILL/RX or TX/COMPLETION) */
  /* Copy path for media whose pages cannot be pinned: an anonymous UMEM of chunks. */
  uint8_t *anon;
  size_t anon_len;
  uint32_t *chunks, nchunks, nfree; /* free chunk stack */
  uint64_t umem_copies;
};

static long sys_bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof *a); }

static int map_ring(int fd, xring *r, struct xdp_ring_offset *o, uint32_t n, size_t dsize, off_t pgoff) {
  r->map_len = o->desc + (size_t)n * dsize;
  r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
  if (r->map == MAP_FAILED) {
    r->map = NULL;
    return errno;
  }
  uint8_t *b = r->map;
  r->prod = (uint32_t *)(b + o->producer);
  r->cons = (uint32_t *)(b + o->consumer);
  r->flags = (uint32_t *)(b + o->flags);
  r->desc = b + o->desc;
  r->size = n;
  r->mask = n - 1;
  return 0;
}

static inline void held_set(xdp_state *x, uint32_t i) { x->held[i >> 3] |= (uint8_t)(1u << (i & 7)); }
static inline void held_clr(xdp_state *x, uint32_t i) { x->held[i >> 3] &= (uint8_t)~(1u << (i & 7)); }

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

#define FAIL(e, ...) (nic_leave_netns(saved), nic_throw_sys(env, e, __VA_ARGS__), -1)

/* This thread's network namespace, as the device's identity beside its index. */
static void ns_id(uint64_t *dev, uint64_t *ino) {
  struct stat st;
  if (stat("/proc/thread-self/ns/net", &st) == 0) *dev = st.st_dev, *ino = st.st_ino;
  else *dev = *ino = 0;
}

/*
 * The egress program on the veth peer: each frame's queue is the steering hash modulo `queues`.
 * The kernel picks a frame's transmit queue after this program runs, from the skb's hash
 * (skb_tx_hash: (hash * queues) >> 32), and a veth frame is received on the queue of that number;
 * so the program sets the hash to q * ceil(2^32 / queues), which that maps back to q. (Writing
 * skb->queue_mapping instead would not do: the kernel takes a nonzero one as a recorded receive
 * queue, plus one.) A socket caches its queue from its first frame, which this program steered.
 */
static void dev_steer_here(xdp_dev *d, const char *peer, uint32_t queues);

static void dev_steer(xdp_dev *d, const char *peer, uint32_t queues, const char *peer_ns) {
  /* the peer may be in another namespace (a container's end): looked up and attached there */
  int back, step = 0;
  int e = nic_netns_switch(peer_ns, &back, &step);
  if (e) {
    snprintf(d->steer, sizeof d->steer, "the peer's own transmit hash (cannot enter %s: %s)", peer_ns, nic_errname(e));
    return;
  }
  dev_steer_here(d, peer, queues);
  nic_leave_netns(back);
}

static void dev_steer_here(xdp_dev *d, const char *peer, uint32_t queues) {
  unsigned pi = if_nametoindex(peer);
  if (!pi) {
    snprintf(d->steer, sizeof d->steer, "the peer's own transmit hash (no device %s to steer: %s)", peer,
             nic_errname(errno));
    return;
  }
  const uint32_t scale = (uint32_t)(((1ull << 32) + queues - 1) / queues);
  const struct bpf_insn prog[] = {
      STEER_HASH_INSNS,
      MODI(0, (int32_t)queues),   /* 55: q */
      MOVR(2, 0),                 /* 56 */
      MUL32I(2, (int32_t)scale),  /* 57: q * ceil(2^32 / queues), below 2^32 */
      MOVR(1, 6),                 /* 58 */
      CALL(BPF_FUNC_set_hash),    /* 59 */
      MOVI(0, 0),                 /* 60: TC_ACT_OK */
      EXIT,                       /* 61 */
  };
  static char log[2048];
  int pfd = nic_bpf_load(BPF_PROG_TYPE_SCHED_CLS, prog, sizeof prog / sizeof prog[0], "pmstack_vsteer", log, sizeof log);
  if (pfd < 0) {
    snprintf(d->steer, sizeof d->steer, "the peer's own transmit hash (the steering program did not load: %s; %.80s)",
             nic_errname(errno), log);
    return;
  }
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.link_create.prog_fd = pfd;
  a.link_create.target_ifindex = pi;
  a.link_create.attach_type = ATTACH_TCX_EGRESS;
  int lfd = (int)sys_bpf(BPF_LINK_CREATE, &a);
  int e = errno;
  close(pfd); /* the link holds the program */
  if (lfd < 0) {
    snprintf(d->steer, sizeof d->steer, "the peer's own transmit hash (tcx egress on %s: %s)", peer, nic_errname(e));
    return;
  }
  d->steer_fd = lfd;
  snprintf(d->steer, sizeof d->steer,
           "a hash of addresses and ports, the same both ways (eBPF on %s's egress, %u queues)", peer, queues);
}

static void dev_free(xdp_dev *d) {
  if (d->steer_fd >= 0) close(d->steer_fd);
  if (d->link_fd >= 0) close(d->link_fd); /* detaches the program */
  if (d->prog_fd >= 0) close(d->prog_fd);
  if (d->map_fd >= 0) close(d->map_fd);
  free(d);
}

/*
 * Adds socket `fd` (bound to `queue`) to its device's map, attaching the device's program and
 * map first if no socket of this process has yet (and the steering, if asked). Under devs_lock,
 * in the device's namespace. 0, or an errno with the message in `err`.
 */
static int dev_join(xdp_state *x, unsigned ifindex, const char *ifname, uint32_t queue, uint32_t flags,
                    const char *steer_peer, uint32_t steer_queues, const char *steer_ns, int fd, char *err,
                    size_t errlen) {
  uint64_t nd, ni;
  ns_id(&nd, &ni);
  xdp_dev *d = devs;
  while (d && !(d->ifindex == ifindex && d->ns_dev == nd && d->ns_ino == ni)) d = d->next;
  bool made = false;
  union bpf_attr a;
  if (!d) {
    made = true;
    if (!(d = calloc(1, sizeof *d))) return snprintf(err, errlen, "pmstack: xdpOpen"), ENOMEM;
    d->ns_dev = nd, d->ns_ino = ni, d->ifindex = ifindex;
    d->map_fd = d->prog_fd = d->link_fd = d->steer_fd = -1;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_XSKMAP;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = XSK_QUEUES;
    snprintf(a.map_name, sizeof a.map_name, "pmstack_xsks");
    d->map_fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
    if (d->map_fd < 0) {
      int e = errno;
      dev_free(d);
      return snprintf(err, errlen, "pmstack: cannot create the XSKMAP (bpf BPF_MAP_CREATE; needs CAP_BPF)"), e;
    }
    /* r2 = ctx->rx_queue_index; r1 = map; r3 = XDP_PASS; call bpf_redirect_map; exit */
    struct bpf_insn prog[6];
    memset(prog, 0, sizeof prog);
    prog[0].code = BPF_LDX | BPF_W | BPF_MEM;
    prog[0].dst_reg = BPF_REG_2;
    prog[0].src_reg = BPF_REG_1;
    prog[0].off = offsetof(struct xdp_md, rx_queue_index);
    prog[1].code = BPF_LD | BPF_DW | BPF_IMM;
    prog[1].dst_reg = BPF_REG_1;
    prog[1].src_reg = BPF_PSEUDO_MAP_FD;
    prog[1].imm = d->map_fd;
    prog[3].code = BPF_ALU64 | BPF_MOV | BPF_K;
    prog[3].dst_reg = BPF_REG_3;
    prog[3].imm = XDP_PASS;
    prog[4].code = BPF_JMP | BPF_CALL;
    prog[4].imm = BPF_FUNC_redirect_map;
    prog[5].code = BPF_JMP | BPF_EXIT;
    static char log[4096];
    d->prog_fd = nic_bpf_load(BPF_PROG_TYPE_XDP, prog, 6, "pmstack_xsk", log, sizeof log);
    if (d->prog_fd < 0) {
      int e = errno;
      dev_free(d);
      return snprintf(err, errlen, "pmstack: cannot load the XDP program (verifier: %.300s)", log), e;
    }
    const int modes[2] = {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
    int e = 0;
    for (int m = (flags & 1) ? 1 : 0; m < 2; m++) {
      memset(&a, 0, sizeof a);
      a.link_create.prog_fd = d->prog_fd;
      a.link_create.target_ifindex = ifindex;
      a.link_create.attach_type = BPF_XDP;
      a.link_create.flags = modes[m];
      d->link_fd = (int)sys_bpf(BPF_LINK_CREATE, &a);
      if (d->link_fd >= 0) {
        d->mode = m == 0 ? "drv" : "skb";
        break;
      }
      e = errno;
    }
    if (d->link_fd < 0) {
      dev_free(d);
      return snprintf(err, errlen, "pmstack: cannot attach the XDP program to %s (BPF_LINK_CREATE, drv and skb mode)",
                      ifname),
             e;
    }
    if (*steer_peer) dev_steer(d, steer_peer, steer_queues, steer_ns);
    else snprintf(d->steer, sizeof d->steer, "the device's own");
  }
  uint32_t key = queue, val = (uint32_t)fd;
  memset(&a, 0, sizeof a);
  a.map_fd = d->map_fd;
  a.key = (uint64_t)(uintptr_t)&key;
  a.value = (uint64_t)(uintptr_t)&val;
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a)) {
    int e = errno;
    if (made) dev_free(d);
    return snprintf(err, errlen, "pmstack: XSKMAP[%u] = socket", queue), e;
  }
  if (made) d->next = devs, devs = d;
  d->refs++;
  x->dev = d;
  return 0;
}

/* Takes socket `x` out of its device's map; the last one detaches the program and the steering. */
static void dev_leave(xdp_state *x) {
  xdp_dev *d = x->dev;
  if (!d) return;
  x->dev = NULL;
  pthread_mutex_lock(&devs_lock);
  uint32_t key = x->queue;
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = d->map_fd;
  a.key = (uint64_t)(uintptr_t)&key;
  sys_bpf(BPF_MAP_DELETE_ELEM, &a);
  if (--d->refs == 0) {
    xdp_dev **p = &devs;
    while (*p != d) p = &(*p)->next;
    *p = d->next;
    dev_free(d);
  }
  pthread_mutex_unlock(&devs_lock);
}

int xdp_open(napi_env env, nic_t *n, const char *ifname, uint32_t queue, uint32_t flags, uint32_t ring_size,
             const char *netns, const char *medium, const char *steer_peer, uint32_t steer_queues,
             const char *steer_ns) {
  if (ring_size == 0) ring_size = 512;
  if (ring_size & (ring_size - 1) || ring_size > 32768)
    return nic_throw(env, "EINVAL", "pmstack: ringSize must be a power of two <= 32768, got %u", ring_size), -1;
  if (queue >= XSK_QUEUES) return nic_throw(env, "EINVAL", "pmstack: queue must be below %u, got %u", XSK_QUEUES, queue), -1;
  if (*steer_peer && (steer_queues < 1 || steer_queues > XSK_QUEUES))
    return nic_throw(env, "EINVAL", "pmstack: steering queues must be 1 to %u, got %u", XSK_QUEUES, steer_queues), -1;
  xdp_state *x = calloc(1, sizeof *x);
  if (!x || !(x->held = calloc((n->buf_count + 7) / 8, 1))) {
    free(x);
    return nic_throw_sys(env, ENOMEM, "pmstack: xdpOpen"), -1;
  }
  n->x = x;
  x->ring_size = ring_size;
  x->queue = queue;
  snprintf(n->ifname, sizeof n->ifname, "%s", ifname);
  int saved;
  if (nic_enter_netns(env, netns, &saved)) return -1;
  unsigned ifindex = if_nametoindex(ifname);
  if (!ifindex) return FAIL(errno, "pmstack: no network interface '%s'%s%s", ifname, *netns ? " in " : "", netns);
  int fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) return FAIL(errno, "pmstack: cannot create an AF_XDP socket (needs CAP_NET_RAW and CONFIG_XDP_SOCKETS)");
  n->fd = fd;

  struct xdp_umem_reg mr = {0};
  mr.chunk_size = BUF_SIZE;
  mr.headroom = 0;
  int e = 0;
  if (!(flags & 8)) {
    mr.addr = (uint64_t)(uintptr_t)(n->base + n->buf_base);
    mr.len = (uint64_t)n->buf_count << BUF_SHIFT;
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof mr)) e = errno;
  }
  if (e && !((flags & 4) && (e == EFAULT || e == EOPNOTSUPP))) {
    nic_leave_netns(saved);
    if (e == EFAULT || e == EOPNOTSUPP)
      return nic_throw(env, "EUMEM",
                       "pmstack: AF_XDP cannot use the PM pool on %s as its UMEM: the kernel refused to pin its pages "
                       "(XDP_UMEM_REG: %s). File pages on ext4/xfs/fsdax cannot be pinned long-term for writing; "
                       "put the pool on tmpfs (/dev/shm), memfd or devdax, use the TAP backend, or allow the copy "
                       "through an anonymous UMEM (copyUmem: 'fallback')",
                       *medium ? medium : "this medium", strerror(e)),
             -1;
    return nic_throw_sys(env, e, "pmstack: XDP_UMEM_REG of the PM pool on %s", *medium ? medium : "?"), -1;
  }
  if (e || (flags & 8)) {
    /* Anonymous UMEM: one chunk per FILL and per TX ring entry. Frames are copied between it and
     * the PM buffers (named in docs/nic.md). */
    x->nchunks = 2 * ring_size;
    x->anon_len = (size_t)x->nchunks * BUF_SIZE;
    x->anon = mmap(NULL, x->anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (x->anon == MAP_FAILED) {
      x->anon = NULL;
      return FAIL(errno, "pmstack: anonymous UMEM of %zu bytes", x->anon_len);
    }
    x->chunks = malloc(sizeof(uint32_t) * x->nchunks);
    if (!x->chunks) return FAIL(ENOMEM, "pmstack: anonymous UMEM");
    for (uint32_t c = 0; c < x->nchunks; c++) x->chunks[c] = x->nchunks - 1 - c;
    x->nfree = x->nchunks;
    mr.addr = (uint64_t)(uintptr_t)x->anon;
    mr.len = x->anon_len;
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof mr)) return FAIL(errno, "pmstack: XDP_UMEM_REG (anonymous)");
  }
  uint32_t rs = ring_size;
  if (setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &rs, 4) || setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &rs, 4) ||
      setsockopt(fd, SOL_XDP, XDP_RX_RING, &rs, 4) || setsockopt(fd, SOL_XDP, XDP_TX_RING, &rs, 4))
    return FAIL(errno, "pmstack: AF_XDP ring sizes (%u)", rs);
  struct xdp_mmap_offsets off;
  socklen_t ol = sizeof off;
  if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol)) return FAIL(errno, "pmstack: XDP_MMAP_OFFSETS");
  if ((e = map_ring(fd, &x->fill, &off.fr, rs, 8, XDP_UMEM_PGOFF_FILL_RING)) ||
      (e = map_ring(fd, &x->comp, &off.cr, rs, 8, XDP_UMEM_PGOFF_COMPLETION_RING)) ||
      (e = map_ring(fd, &x->rx, &off.rx, rs, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING)) ||
      (e = map_ring(fd, &x->tx, &off.tx, rs, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING)))
    return FAIL(e, "pmstack: mmap of the AF_XDP rings");

  /* bind: zero copy first unless told otherwise; copy mode where the driver has none (veth). */
  struct sockaddr_xdp sa = {0};
  sa.sxdp_family = AF_XDP;
  sa.sxdp_ifindex = ifindex;
  sa.sxdp_queue_id = queue;
  int tries = 0;
  bool zc = !(flags & 2);
  for (;;) {
    sa.sxdp_flags = XDP_USE_NEED_WAKEUP | (zc ? XDP_ZEROCOPY : XDP_COPY);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0) break;
    e = errno;
    if (zc && (e == EOPNOTSUPP || e == EINVAL || e == EPROTONOSUPPORT)) {
      zc = false;
      continue;
    }
    if (e == EBUSY && tries++ < 40) { /* the previous owner's UMEM is still being torn down (~1 s) */
      sleep_ms(50);
      continue;
    }
    return FAIL(e, "pmstack: cannot bind the AF_XDP socket to %s queue %u", ifname, queue);
  }
  x->bind = zc ? "zerocopy" : "copy";
  x->bind_retries = (uint32_t)tries;

  pthread_mutex_lock(&devs_lock);
  char err[400];
  e = dev_join(x, ifindex, ifname, queue, flags, steer_peer, steer_queues, steer_ns, fd, err, sizeof err);
  pthread_mutex_unlock(&devs_lock);
  nic_leave_netns(saved);
  if (e) return nic_throw_sys(env, e, "%s", err), -1;
  const char *mode = x->dev->mode;
  if (x->anon)
    snprintf(n->copies, sizeof n->copies,
             "AF_XDP %s queue %u, %s mode, %s through an anonymous UMEM (the PM pool on %s cannot be its UMEM): the "
             "kernel copies each frame into a UMEM chunk and pmstack copies it into its PM buffer (2 copies); send: "
             "pmstack copies (and linearizes) the frame into a UMEM chunk, the kernel copies it out (2 copies).",
             ifname, queue, mode, zc ? "zero copy" : "copy mode", *medium ? medium : "this medium");
  else
    snprintf(n->copies, sizeof n->copies,
             "AF_XDP %s queue %u, %s mode, %s: %s; no copy after that. Send: %s. Chains of several buffers are "
             "linearized into their first buffer before sending (a copy: AF_XDP takes one buffer per frame here).",
             ifname, queue, mode, zc ? "zero copy" : "copy mode",
             zc ? "the NIC writes each frame into its PM buffer by DMA (the UMEM is the pool)"
                : "the kernel copies each frame into its PM buffer (the UMEM is the pool)",
             zc ? "the NIC reads the PM buffer by DMA" : "the kernel copies each frame out of its PM buffer");
  return 0;
}

napi_value xdp_info(napi_env env, nic_t *n, napi_value o) {
  napi_value v;
  xdp_state *x = n->x;
  if (napi_create_string_utf8(env, x->dev ? x->dev->mode : "", NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_named_property(env, o, "mode", v) != napi_ok ||
      napi_create_string_utf8(env, x->dev ? x->dev->steer : "", NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_named_property(env, o, "steering", v) != napi_ok ||
      napi_create_string_utf8(env, x->bind ? x->bind : "", NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_named_property(env, o, "bind", v) != napi_ok || napi_create_uint32(env, x->ring_size, &v) != napi_ok ||
      napi_set_named_property(env, o, "ringSize", v) != napi_ok || napi_create_uint32(env, x->queue, &v) != napi_ok ||
      napi_set_named_property(env, o, "queue", v) != napi_ok || napi_create_uint32(env, x->bind_retries, &v) != napi_ok ||
      napi_set_named_property(env, o, "bindRetries", v) != napi_ok ||
      napi_create_string_utf8(env, x->anon ? "anonymous" : "pool", NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_named_property(env, o, "umem", v) != napi_ok)
    return NULL;
  return o;
}

static inline uint8_t *slot_at(ring_t *r, uint32_t pos) { return r->p + RING_HDR + (size_t)(pos & r->mask) * SLOT_SIZE; }

uint32_t xdp_rx(nic_t *n, ring_t *r, table_t *fill, int *err) {
  xdp_state *x = n->x;
  uint32_t frames = 0;
  uint32_t *rhead = (uint32_t *)(r->p + 4), *rtail = (uint32_t *)(r->p + 8);
  /* 1. RX descriptors -> pmstack ring slots */
  uint32_t cons = *x->rx.cons, prod = __atomic_load_n(x->rx.prod, __ATOMIC_ACQUIRE);
  uint32_t tail = *rtail, space = r->mask + 1 - (tail - __atomic_load_n(rhead, __ATOMIC_ACQUIRE));
  if (prod - cons > space) n->st.rx_no_room++;
  while (cons != prod && space > 0) {
    struct xdp_desc *d = (struct xdp_desc *)x->rx.desc + (cons & x->rx.mask);
    uint64_t addr = d->addr;
    uint32_t idx = (uint32_t)(addr >> BUF_SHIFT), off = addr & (BUF_SIZE - 1), len = d->len;
    if (x->anon) {
      /* Copy path: the frame is in an anonymous UMEM chunk; copy it into a PM buffer. */
      uint32_t chunk = idx;
      if (chunk >= x->nchunks || off + len > BUF_SIZE) {
        cons++;
        n->st.rx_bad++;
        continue;
      }
      if (*fill->count == 0) {
        n->st.rx_no_room++;
        break;
      }
      idx = fill->e[*fill->count - 1];
      if (idx >= n->buf_count) {
        *err = EINVAL;
        n->st.rx_bad++;
        break;
      }
      (*fill->count)--;
      memcpy(nic_buf(n, idx) + off, x->anon + ((size_t)chunk << BUF_SHIFT) + off, len);
      n->st.rx_copied_bytes += len;
      x->chunks[x->nfree++] = chunk;
      cons++;
    } else {
      cons++;
      if (idx >= n->buf_count || off + len > BUF_SIZE) {
        n->st.rx_bad++;
        continue;
      }
      held_clr(x, idx);
    }
    uint8_t *s = slot_at(r, tail);
    uint16_t o16 = off, l16 = len;
    uint32_t zero = 0;
    memcpy(s, &idx, 4);
    memcpy(s + 4, &o16, 2);
    memcpy(s + 6, &l16, 2);
    memcpy(s + 8, &zero, 4);
    memcpy(s + 12, &zero, 4);
    tail++;
    space--;
    frames++;
    n->st.rx_frames++;
    n->st.rx_slots++;
    n->st.rx_bytes += len;
  }
  __atomic_store_n(x->rx.cons, cons, __ATOMIC_RELEASE);
  __atomic_store_n(rtail, tail, __ATOMIC_RELEASE);
  /* 2. fill table -> FILL ring */
  uint32_t fprod = *x->fill.prod, fcons = __atomic_load_n(x->fill.cons, __ATOMIC_ACQUIRE);
  uint32_t room = x->fill.size - (fprod - fcons), have = *fill->count, k = 0;
  if (x->anon) {
    while (k < room && x->nfree > 0) {
      ((uint64_t *)x->fill.desc)[(fprod + k) & x->fill.mask] = (uint64_t)x->chunks[--x->nfree] << BUF_SHIFT;
      k++;
    }
    have = 0; /* nothing more to post: the fill table's buffers stay with the host until a copy */
  }
  while (!x->anon && k < room && have > 0) {
    uint32_t idx = fill->e[have - 1];
    if (idx >= n->buf_count) {
      *err = EINVAL;
      n->st.rx_bad++;
      break;
    }
    have--;
    ((uint64_t *)x->fill.desc)[(fprod + k) & x->fill.mask] = (uint64_t)idx << BUF_SHIFT;
    held_set(x, idx);
    k++;
  }
  if (!x->anon) *fill->count = have;
  if (k) __atomic_store_n(x->fill.prod, fprod + k, __ATOMIC_RELEASE);
  if (__atomic_load_n(x->fill.flags, __ATOMIC_ACQUIRE) & XDP_RING_NEED_WAKEUP) {
    recvfrom(n->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
    n->st.syscalls++;
    n->st.wakeups++;
  }
  return frames;
}

static uint32_t reap(nic_t *n, table_t *done) {
  xdp_state *x = n->x;
  uint32_t cons = *x->comp.cons, prod = __atomic_load_n(x->comp.prod, __ATOMIC_ACQUIRE), k = 0;
  while (cons != prod && *done->count < done->cap) {
    uint64_t addr = ((uint64_t *)x->comp.desc)[cons & x->comp.mask];
    uint32_t idx = (uint32_t)(addr >> BUF_SHIFT);
    cons++;
    if (x->anon) {
      if (idx < x->nchunks) x->chunks[x->nfree++] = idx;
    } else if (idx < n->buf_count) {
      held_clr(x, idx);
      done->e[(*done->count)++] = idx;
      k++;
    }
  }
  __atomic_store_n(x->comp.cons, cons, __ATOMIC_RELEASE);
  return k;
}

uint32_t xdp_tx(nic_t *n, ring_t *r, table_t *done, int *err) {
  xdp_state *x = n->x;
  uint32_t frames = 0;
  uint32_t *rhead = (uint32_t *)(r->p + 4), *rtail = (uint32_t *)(r->p + 8);
  reap(n, done);
  uint32_t tprod = *x->tx.prod, tcons = __atomic_load_n(x->tx.cons, __ATOMIC_ACQUIRE);
  uint32_t head = *rhead, tail = __atomic_load_n(rtail, __ATOMIC_ACQUIRE), pushed = 0;
  while (head != tail && x->tx.size - (tprod + pushed - tcons) > 0) {
    /* gather one frame */
    uint32_t k = 0, idx0 = 0, off0 = 0, bad = 0;
    size_t total = 0;
    bool complete = false;
    while (head + k != tail && k < MAX_CHAIN) {
      uint8_t *s = slot_at(r, head + k);
      uint32_t buf, fl;
      uint16_t off, len;
      memcpy(&buf, s, 4);
      memcpy(&off, s + 4, 2);
      memcpy(&len, s + 6, 2);
      memcpy(&fl, s + 12, 4);
      if (buf >= n->buf_count || (uint32_t)off + len > BUF_SIZE) bad = 1;
      if (k == 0) idx0 = buf, off0 = off;
      total += len;
      k++;
      if (!(fl & SF_MORE)) {
        complete = true;
        break;
      }
    }
    if (!complete && k < MAX_CHAIN) break; /* chain still being written */
    if (!complete) bad = 1;
    if (done->cap - *done->count < k) break;
    if (!bad && total > BUF_SIZE) bad = 1; /* no multi-buffer frames on this path: drop */
    if (!bad && x->anon) {
      /* Copy path: copy (and linearize) the frame into a free UMEM chunk; every PM buffer completes now. */
      if (x->nfree == 0) break;
      uint32_t chunk = x->chunks[--x->nfree];
      uint8_t *dst = x->anon + ((size_t)chunk << BUF_SHIFT);
      size_t at = 0;
      for (uint32_t j = 0; j < k; j++) {
        uint8_t *s = slot_at(r, head + j);
        uint32_t buf;
        uint16_t off, len;
        memcpy(&buf, s, 4);
        memcpy(&off, s + 4, 2);
        memcpy(&len, s + 6, 2);
        memcpy(dst + at, nic_buf(n, buf) + off, len);
        at += len;
        done->e[(*done->count)++] = buf;
      }
      n->st.tx_copied_bytes += total;
      struct xdp_desc *d = (struct xdp_desc *)x->tx.desc + ((tprod + pushed) & x->tx.mask);
      d->addr = (uint64_t)chunk << BUF_SHIFT;
      d->len = (uint32_t)total;
      d->options = 0;
      pushed++;
      frames++;
      n->st.tx_frames++;
      n->st.tx_slots += k;
      n->st.tx_bytes += total;
      head += k;
      continue;
    }
    if (!bad && k > 1) {
      /* Linearize the chain into its first buffer: a copy (named in docs/nic.md). */
      uint8_t *b0 = nic_buf(n, idx0);
      uint16_t len0;
      memcpy(&len0, slot_at(r, head) + 6, 2);
      if (off0 + total > BUF_SIZE) {
        memmove(b0, b0 + off0, len0);
        off0 = 0;
      }
      size_t at = off0 + len0;
      for (uint32_t j = 1; j < k; j++) {
        uint8_t *s = slot_at(r, head + j);
        uint32_t buf;
        uint16_t off, len;
        memcpy(&buf, s, 4);
        memcpy(&off, s + 4, 2);
        memcpy(&len, s + 6, 2);
        memcpy(b0 + at, nic_buf(n, buf) + off, len);
        at += len;
        n->st.tx_copied_bytes += len;
        done->e[(*done->count)++] = buf; /* copied out: complete now */
      }
    }
    if (bad) {
      n->st.tx_dropped++;
      for (uint32_t j = 0; j < k; j++) {
        uint32_t buf;
        memcpy(&buf, slot_at(r, head + j), 4);
        if (buf < n->buf_count) done->e[(*done->count)++] = buf;
      }
    } else {
      struct xdp_desc *d = (struct xdp_desc *)x->tx.desc + ((tprod + pushed) & x->tx.mask);
      d->addr = ((uint64_t)idx0 << BUF_SHIFT) + off0;
      d->len = (uint32_t)total;
      d->options = 0;
      held_set(x, idx0);
      pushed++;
      frames++;
      n->st.tx_frames++;
      n->st.tx_slots += k;
      n->st.tx_bytes += total;
    }
    head += k;
  }
  if (pushed) __atomic_store_n(x->tx.prod, tprod + pushed, __ATOMIC_RELEASE);
  __atomic_store_n(rhead, head, __ATOMIC_RELEASE);
  /* Kick only when the kernel asks for it (always, in copy mode) and there is work queued. In
   * copy (generic) mode one kick sends at most the kernel's TX budget (32 frames by default) and
   * says EAGAIN when more is left: kick again while each kick makes progress, so a turn's frames
   * leave in this turn instead of waiting for the next wake-up (bounded: 64 kicks). */
  for (int kick = 0; kick < 64; kick++) {
    uint32_t cons = __atomic_load_n(x->tx.cons, __ATOMIC_ACQUIRE);
    if (*x->tx.prod == cons || !(__atomic_load_n(x->tx.flags, __ATOMIC_ACQUIRE) & XDP_RING_NEED_WAKEUP)) break;
    n->st.syscalls++;
    n->st.kicks++;
    if (sendto(n->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0) {
      int e = errno;
      if (e == EAGAIN || e == EBUSY || e == ENOBUFS || e == ENETDOWN) n->st.tx_eagain++;
      else {
        n->st.tx_errors++;
        *err = e;
        break;
      }
      if (e != EAGAIN && e != EBUSY) break;
    }
    if (__atomic_load_n(x->tx.cons, __ATOMIC_ACQUIRE) == cons) break; /* no progress: later */
  }
  reap(n, done); /* copy mode completes during the kick */
  return frames;
}

uint32_t xdp_outstanding(nic_t *n, uint32_t *out, uint32_t cap) {
  xdp_state *x = n->x;
  uint32_t k = 0;
  for (uint32_t i = 0; i < n->buf_count && k < cap; i++)
    if (x->held[i >> 3] & (1u << (i & 7))) out[k++] = i;
  return k;
}

int xdp_kernel_stats(nic_t *n, uint64_t out[6]) {
  struct xdp_statistics st;
  socklen_t len = sizeof st;
  memset(&st, 0, sizeof st);
  if (n->fd < 0) return EBADF;
  if (getsockopt(n->fd, SOL_XDP, XDP_STATISTICS, &st, &len)) return errno;
  /* kernels before 5.9 fill only the first three: the others stay 0 */
  out[0] = st.rx_dropped;
  out[1] = st.rx_invalid_descs;
  out[2] = st.tx_invalid_descs;
  out[3] = st.rx_ring_full;
  out[4] = st.rx_fill_ring_empty_descs;
  out[5] = st.tx_ring_empty_descs;
  return 0;
}

void xdp_close(nic_t *n) {
  xdp_state *x = n->x;
  if (!x) return;
  dev_leave(x); /* the last socket of its device detaches the program */
  if (n->fd >= 0) close(n->fd); /* releases the UMEM (the kernel unpins it) */
  n->fd = -1;
  xring *rs[4] = {&x->fill, &x->comp, &x->rx, &x->tx};
  for (int i = 0; i < 4; i++)
    if (rs[i]->map) munmap(rs[i]->map, rs[i]->map_len), rs[i]->map = NULL;
  free(x->held);
  x->held = NULL;
  free(x->chunks);
  x->chunks = NULL;
  if (x->anon) munmap(x->anon, x->anon_len);
  n->x = NULL;
  free(x);
}
