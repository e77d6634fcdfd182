/*
 * TAP backend: /dev/net/tun with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR and checksum/TSO (and USO)
 * offloads, so the kernel may hand over 64 KiB GSO superframes and frames whose checksum is to
 * be completed (NEEDS_CSUM). Each frame is read with one readv straight into a chain of PM
 * buffers: the kernel's copy into the PM buffer is the only copy on this path.
 *
 * Batching: where the kernel has io_uring, up to TB_MAX readv (or writev) requests go to the
 * kernel in one io_uring_enter, each with RWF_NOWAIT, and the call waits for all of them; a read
 * that finds the queue empty ends with EAGAIN, as the plain readv would. Each frame still costs
 * the kernel its tun read or write, but not a system call of its own (on a virtual machine the
 * system call is most of a small frame's cost). Without io_uring (old kernel, seccomp, the
 * io_uring_disabled sysctl) or with TAP_NO_BATCH, one readv or writev per frame.
 */
#include "nic.h"
#include "steer.h"
#include "uring.h"

#include <errno.h>
#include <linux/bpf.h>
#include <linux/fs.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

#define TAP_NO_BATCH 16u /* open flag: one readv/writev per frame even where io_uring exists */
#define TB_MAX 32u       /* frames per io_uring submission */

struct tap_batch {
  uring_t u;
  uint32_t rx_hint; /* frames the last receive call got: the size of the next call's first batch */
  struct iovec iov[TB_MAX][MAX_CHAIN + 1];
  struct virtio_net_hdr vh[TB_MAX];
  int32_t res[TB_MAX];
  /* TX: each batched frame's first ring position, slot count, bytes and buffers */
  uint32_t pos[TB_MAX], k[TB_MAX], bad[TB_MAX];
  size_t total[TB_MAX];
  uint32_t idx[TB_MAX][MAX_CHAIN];
};

/* Largest frame the kernel may hand over with offloads on: a 64 KiB GSO superframe plus its
 * Ethernet/VLAN header. 34 buffers of 2048 bytes hold it. */
#define GSO_MAX_FRAME (65536u + 14u + 4u)

/*
 * A multi-queue device's steering program (TUNSETSTEERINGEBPF): the queue of each frame the
 * kernel sends is the steering hash of its addresses and ports (steer.h), the same both ways,
 * modulo the queues. Without it the device picks by the socket's transmit hash and its own flow
 * table, and Linux changes a socket's hash after a retransmission timeout: a connection could
 * move to a worker that does not hold it. docs/scaling.md.
 */
static int tap_steer(nic_t *n) {
  const struct bpf_insn prog[] = {
      STEER_HASH_INSNS,
      EXIT,                /* 55: the device takes it modulo its queues */
  };
  static char log[2048];
  int fd =
      nic_bpf_load(BPF_PROG_TYPE_SOCKET_FILTER, prog, sizeof prog / sizeof prog[0], "pmstack_steer", log, sizeof log);
  if (fd < 0) {
    int e = errno;
    snprintf(n->steer, sizeof n->steer, "the device's own (the steering program did not load: %s; %.80s)",
             nic_errname(e), log);
    return -1;
  }
  int r = ioctl(n->fd, TUNSETSTEERINGEBPF, &fd);
  int e = errno;
  close(fd); /* the device holds the program */
  if (r) {
    snprintf(n->steer, sizeof n->steer, "the device's own (TUNSETSTEERINGEBPF: %s)", nic_errname(e));
    return -1;
  }
  snprintf(n->steer, sizeof n->steer, "a hash of addresses and ports, the same both ways (eBPF steering)");
  return 0;
}

int tap_open(napi_env env, nic_t *n, const char *name, uint32_t flags, const char *netns) {
  bool vnet = flags & 1, mq = flags & 2;
  int saved;
  if (nic_enter_netns(env, netns, &saved)) return -1;
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  int e = errno;
  if (fd < 0) {
    nic_leave_netns(saved);
    return nic_throw_sys(env, e, "pmstack: cannot open /dev/net/tun"), -1;
  }
  n->fd = fd;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0) | (mq ? IFF_MULTI_QUEUE : 0);
  snprintf(ifr.ifr_name, IF_NAMESIZE, "%s", name);
  int r = ioctl(fd, TUNSETIFF, &ifr);
  e = errno;
  nic_leave_netns(saved); /* the device stays in the namespace it was made in */
  if (r) return nic_throw_sys(env, e, "pmstack: cannot create TAP device '%s' (TUNSETIFF; needs CAP_NET_ADMIN)", name), -1;
  snprintf(n->ifname, sizeof n->ifname, "%s", ifr.ifr_name);
  /* every queue sets the same program: the device keeps one */
  if (mq) tap_steer(n);
  n->vnet_sz = 0;
  if (vnet) {
    int sz = sizeof(struct virtio_net_hdr);
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz)) return nic_throw_sys(env, errno, "pmstack: TUNSETVNETHDRSZ on %s", n->ifname), -1;
    n->vnet_sz = sz;
    unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    if (!(flags & 8) && ioctl(fd, TUNSETOFFLOAD, off | TUN_F_USO4 | TUN_F_USO6) == 0) {
      n->uso = true;
    } else if (ioctl(fd, TUNSETOFFLOAD, off)) {
      return nic_throw_sys(env, errno, "pmstack: TUNSETOFFLOAD on %s", n->ifname), -1;
    }
    n->offload = true;
  }
  n->rx_need = n->offload ? (GSO_MAX_FRAME + BUF_SIZE - 1) / BUF_SIZE : 1;
  if (flags & TAP_NO_BATCH) {
    snprintf(n->batch, sizeof n->batch, "none: one readv or writev per frame (asked for)");
  } else {
    struct tap_batch *b = calloc(1, sizeof *b);
    int r2 = b ? uring_init(&b->u, 2 * TB_MAX) : -ENOMEM;
    if (r2 == 0) {
      n->tb = b;
      snprintf(n->batch, sizeof n->batch, "io_uring: up to %u readv or writev per system call", TB_MAX);
    } else {
      free(b);
      snprintf(n->batch, sizeof n->batch, "none: one readv or writev per frame (io_uring unavailable: %s)",
               nic_errname(-r2));
    }
  }
  snprintf(n->copies, sizeof n->copies,
           "TAP %s: the kernel copies each received frame into its PM buffers (one readv per frame%s%s); no copy "
           "after that. Send: the kernel copies each frame out of its PM buffers (one writev per frame%s). "
           "%s",
           n->ifname, n->tb ? ", up to 32 per system call through io_uring" : "",
           n->offload ? ", GSO superframes up to 64 KiB as chains of 2 KiB buffers" : "",
           n->offload ? ", with a virtio-net header for checksum/GSO offload" : "",
           n->offload ? "Checksums marked NEEDS_CSUM are completed by the core (a read of the bytes, not a copy)."
                      : "Frames must fit one 2 KiB buffer (MTU <= 2030).");
  return 0;
}

static inline uint8_t *slot_at(ring_t *r, uint32_t pos) { return r->p + RING_HDR + (size_t)(pos & r->mask) * SLOT_SIZE; }

static inline void put_slot(uint8_t *s, uint32_t buf, uint16_t off, uint16_t len, uint32_t flags) {
  memcpy(s, &buf, 4);
  memcpy(s + 4, &off, 2);
  memcpy(s + 6, &len, 2);
  uint32_t conn = 0;
  memcpy(s + 8, &conn, 4);
  memcpy(s + 12, &flags, 4);
}

/* A received frame's first-slot flags from its virtio-net header; its offsets into the side table. */
static uint32_t rx_flags(nic_t *n, const struct virtio_net_hdr *vh, uint8_t *meta, ring_t *r, uint32_t tail) {
  uint32_t fl = 0;
  if (!n->vnet_sz) return 0;
  if (vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) fl |= SF_NEEDS_CSUM;
  if (vh->flags & VIRTIO_NET_HDR_F_DATA_VALID) fl |= SF_CSUM_VALID;
  if (vh->gso_type & VIRTIO_NET_HDR_GSO_ECN) fl |= SF_GSO_ECN;
  fl |= ((uint32_t)(vh->gso_type & 0x0f) << SF_GSO_SHIFT);
  if ((fl & SF_NIC_META) && meta) {
    uint16_t m[4] = {vh->csum_start, vh->csum_offset, vh->gso_size, vh->hdr_len};
    memcpy(meta + (size_t)(tail & r->mask) * META_SIZE, m, META_SIZE);
  }
  return fl;
}

/* The virtio-net header of a frame to send, from its first slot's flags and side-table entry. */
static void tx_vnet(struct virtio_net_hdr *vh, const uint8_t *meta, ring_t *r, uint32_t head, uint32_t fl0) {
  memset(vh, 0, sizeof *vh);
  if (!meta || !(fl0 & SF_NIC_META)) return;
  uint16_t m[4];
  memcpy(m, meta + (size_t)(head & r->mask) * META_SIZE, META_SIZE);
  if (fl0 & SF_NEEDS_CSUM) {
    vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vh->csum_start = m[0];
    vh->csum_offset = m[1];
  }
  uint32_t g = (fl0 & SF_GSO_MASK) >> SF_GSO_SHIFT;
  if (g) {
    vh->gso_type = g | ((fl0 & SF_GSO_ECN) ? VIRTIO_NET_HDR_GSO_ECN : 0);
    vh->gso_size = m[2];
    vh->hdr_len = m[3];
  }
}

/*
 * Puts a frame read as `got` bytes (its virtio-net header, if any, included) into the RX ring
 * at `tail`: its buffers are the fill entries top[0], top[-1], ... in the order the read was
 * offered them, chained with SF_MORE. Returns its slot count, or 0 for a read too short to
 * hold a frame (counted as rx_bad).
 */
static uint32_t rx_put(nic_t *n, ring_t *r, uint8_t *meta, const struct virtio_net_hdr *vh, const uint32_t *top,
                       size_t got, uint32_t tail) {
  size_t len = got - n->vnet_sz;
  if (got < (size_t)n->vnet_sz || len == 0) {
    n->st.rx_bad++;
    return 0;
  }
  uint32_t nb = (len + BUF_SIZE - 1) / BUF_SIZE;
  uint32_t fl = rx_flags(n, vh, meta, r, tail);
  for (uint32_t k = 0; k < nb; k++) {
    size_t l = len - (size_t)k * BUF_SIZE;
    if (l > BUF_SIZE) l = BUF_SIZE;
    put_slot(slot_at(r, tail + k), *(top - k), 0, (uint16_t)l, (k == 0 ? fl : 0) | (k + 1 < nb ? SF_MORE : 0));
  }
  n->st.rx_frames++;
  n->st.rx_slots += nb;
  n->st.rx_bytes += len;
  return nb;
}

static uint32_t rx_one(nic_t *n, ring_t *r, uint8_t *meta, table_t *fill, int *err) {
  struct iovec iov[MAX_CHAIN + 1];
  struct virtio_net_hdr vh;
  uint32_t frames = 0, need = n->rx_need;
  uint32_t *rhead = (uint32_t *)(r->p + 4), *rtail = (uint32_t *)(r->p + 8);
  for (;;) {
    uint32_t tail = __atomic_load_n(rtail, __ATOMIC_RELAXED);
    uint32_t space = r->mask + 1 - (tail - __atomic_load_n(rhead, __ATOMIC_ACQUIRE));
    uint32_t have = *fill->count;
    if (have < need || space < need) {
      n->st.rx_no_room++;
      break;
    }
    uint32_t k;
    for (k = 0; k < need; k++) {
      uint32_t idx = fill->e[have - 1 - k];
      if (idx >= n->buf_count) {
        *err = EINVAL;
        n->st.rx_bad++;
        return frames;
      }
      iov[k + 1].iov_base = nic_buf(n, idx);
      iov[k + 1].iov_len = BUF_SIZE;
    }
    int cnt = need;
    if (n->vnet_sz) {
      iov[0].iov_base = &vh;
      iov[0].iov_len = n->vnet_sz;
    }
    struct iovec *v = n->vnet_sz ? iov : iov + 1;
    ssize_t got = readv(n->fd, v, cnt + (n->vnet_sz ? 1 : 0));
    n->st.syscalls++;
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        n->st.rx_eagain++;
        break;
      }
      n->st.rx_errors++;
      *err = errno;
      break;
    }
    uint32_t nb = rx_put(n, r, meta, &vh, &fill->e[have - 1], (size_t)got, tail);
    if (nb == 0) continue;
    *fill->count = have - nb;
    __atomic_store_n(rtail, tail + nb, __ATOMIC_RELEASE);
    frames++;
  }
  return frames;
}

/* One frame to send, gathered from the TX ring: its slots' buffers as iovecs (iov[1..k]). */
typedef struct {
  uint32_t k, fl0, bad;
  size_t total;
} tx_frame;

/*
 * Gathers the frame at `head`: 1 when it is whole (or a chain longer than any frame, marked
 * bad and dropped up to there), 0 when the producer has not finished its chain yet. Slots that
 * name no buffer of the pool, or bytes past one, mark the frame bad (dropped and counted).
 */
static int tx_gather(nic_t *n, ring_t *r, uint32_t head, uint32_t tail, struct iovec *iov, uint32_t *idxs,
                     tx_frame *f) {
  f->k = 0;
  f->fl0 = 0;
  f->bad = 0;
  f->total = 0;
  while (head + f->k != tail && f->k < MAX_CHAIN) {
    uint32_t k = f->k;
    uint8_t *s = slot_at(r, head + k);
    uint32_t buf, fl;
    uint16_t off, len;
    memcpy(&buf, s, 4);
    memcpy(&off, s + 4, 2);
    memcpy(&len, s + 6, 2);
    memcpy(&fl, s + 12, 4);
    if (k == 0) f->fl0 = fl;
    if (buf >= n->buf_count || (uint32_t)off + len > BUF_SIZE) f->bad = 1;
    idxs[k] = buf;
    iov[k + 1].iov_base = f->bad ? NULL : nic_buf(n, buf) + off;
    iov[k + 1].iov_len = len;
    f->total += len;
    f->k = k + 1;
    if (!(fl & SF_MORE)) return 1;
  }
  if (f->k == MAX_CHAIN) {
    f->bad = 1; /* a chain longer than any frame: drop it up to here */
    return 1;
  }
  return 0;
}

static uint32_t tx_one(nic_t *n, ring_t *r, uint8_t *meta, table_t *done, int *err) {
  struct iovec iov[MAX_CHAIN + 1];
  uint32_t idxs[MAX_CHAIN];
  struct virtio_net_hdr vh;
  uint32_t frames = 0;
  uint32_t *rhead = (uint32_t *)(r->p + 4), *rtail = (uint32_t *)(r->p + 8);
  for (;;) {
    uint32_t head = __atomic_load_n(rhead, __ATOMIC_RELAXED), tail = __atomic_load_n(rtail, __ATOMIC_ACQUIRE);
    if (head == tail) break;
    tx_frame f;
    if (!tx_gather(n, r, head, tail, iov, idxs, &f)) break; /* the producer has not finished this chain */
    uint32_t k = f.k, fl0 = f.fl0, bad = f.bad;
    size_t total = f.total;
    if (done->cap - *done->count < k) break; /* no room to report completions: later */
    if (!bad) {
      tx_vnet(&vh, meta, r, head, fl0);
      iov[0].iov_base = &vh;
      iov[0].iov_len = n->vnet_sz;
      struct iovec *v = n->vnet_sz ? iov : iov + 1;
      ssize_t w = writev(n->fd, v, k + (n->vnet_sz ? 1 : 0));
      n->st.syscalls++;
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) {
        n->st.tx_eagain++;
        break;
      }
      if (w < 0 && errno == EIO) {
        /* The device is down (not IFF_UP): like a NIC with no link, drop and count, no error. */
        n->st.tx_dropped++;
      } else if (w < 0) {
        n->st.tx_errors++;
        n->st.tx_dropped++;
        *err = errno;
      } else {
        frames++;
        n->st.tx_frames++;
        n->st.tx_slots += k;
        n->st.tx_bytes += total;
      }
    } else {
      n->st.tx_dropped++;
    }
    /* Completed (sent or dropped): the host drops the NIC's reference on each buffer. */
    for (uint32_t j = 0; j < k; j++)
      if (idxs[j] < n->buf_count) done->e[(*done->count)++] = idxs[j];
    __atomic_store_n(rhead, head + k, __ATOMIC_RELEASE);
  }
  return frames;
}

/* ---------- batched through io_uring ---------- */

/* Queues one readv or writev of `cnt` iovecs, RWF_NOWAIT; user_data is the batch's slot `i`. */
static struct io_uring_sqe *tb_queue(nic_t *n, uint8_t op, const struct iovec *iov, uint32_t cnt, uint32_t i) {
  struct io_uring_sqe *q = uring_sqe(&n->tb->u);
  q->opcode = op;
  q->fd = n->fd;
  q->addr = (uintptr_t)iov;
  q->len = cnt;
  q->off = (uint64_t)-1;
  q->rw_flags = RWF_NOWAIT;
  q->user_data = i;
  return q;
}

/* Submits what is queued and waits for all `sqes` results, into res[0..slots): 0, or -errno. */
static int tb_submit(nic_t *n, uint32_t sqes, uint32_t slots) {
  struct tap_batch *b = n->tb;
  int sr = uring_submit(&b->u, sqes);
  n->st.syscalls++;
  if (sr < 0) return sr;
  uint64_t d;
  int32_t res;
  while (uring_cqe(&b->u, &d, &res))
    if (d < slots) b->res[d] = res;
  return 0;
}

/*
 * Receive: up to TB_MAX reads in one submission, each offered rx_need buffers from the top of
 * the fill table (read i takes the i-th group of rx_need entries), then the frames go into the
 * RX ring in the order of their reads, and the fill table is compacted: the buffers a frame
 * filled leave it, the rest stay in their order. The first submission of a call is sized by
 * what the previous call got (at least 4); a submission whose reads all got a frame is followed
 * by one twice its size, one with an empty read ends the call.
 */
static uint32_t rx_batch(nic_t *n, ring_t *r, uint8_t *meta, table_t *fill, int *err) {
  struct tap_batch *b = n->tb;
  uint32_t frames = 0, need = n->rx_need, vn = n->vnet_sz ? 1 : 0;
  uint32_t *rhead = (uint32_t *)(r->p + 4), *rtail = (uint32_t *)(r->p + 8);
  /* The first batch: as many reads as the last call got frames, at least 2 (a read that finds
   * the queue empty still costs the kernel its iovec import: with 4, a lone request's frame
   * cost 3 such reads, with 2 it costs 1); a full batch doubles the next one. */
  uint32_t want = b->rx_hint < 2 ? 2 : b->rx_hint > TB_MAX ? TB_MAX : b->rx_hint;
  for (;;) {
    uint32_t tail = __atomic_load_n(rtail, __ATOMIC_RELAXED);
    uint32_t space = r->mask + 1 - (tail - __atomic_load_n(rhead, __ATOMIC_ACQUIRE));
    uint32_t have = *fill->count;
    uint32_t k = want;
    if (k > have / need) k = have / need;
    if (k > space / need) k = space / need;
    if (k == 0) {
      n->st.rx_no_room++;
      break;
    }
    for (uint32_t i = 0; i < k; i++) {
      for (uint32_t j = 0; j < need; j++) {
        uint32_t idx = fill->e[have - 1 - i * need - j];
        if (idx >= n->buf_count) {
          *err = EINVAL;
          n->st.rx_bad++;
          b->rx_hint = frames;
          return frames;
        }
        b->iov[i][j + 1].iov_base = nic_buf(n, idx);
        b->iov[i][j + 1].iov_len = BUF_SIZE;
      }
      b->iov[i][0].iov_base = &b->vh[i];
      b->iov[i][0].iov_len = n->vnet_sz;
      tb_queue(n, IORING_OP_READV, b->iov[i] + 1 - vn, need + vn, i);
    }
    int sr = tb_submit(n, k, k);
    if (sr < 0) {
      n->st.rx_errors++;
      *err = -sr;
      break;
    }
    bool empty = false;
    uint32_t got = 0, base = have - k * need;
    for (uint32_t i = 0; i < k; i++) {
      int32_t got_len = b->res[i];
      if (got_len < 0) {
        if (got_len == -EAGAIN) {
          n->st.rx_eagain++;
          empty = true;
        } else if (got_len != -EINTR) {
          n->st.rx_errors++;
          *err = -got_len;
          empty = true;
        }
        continue;
      }
      uint32_t *top = &fill->e[have - 1 - i * need];
      uint32_t nb = rx_put(n, r, meta, &b->vh[i], top, (size_t)got_len, tail);
      for (uint32_t j = 0; j < nb; j++) *(top - j) = UINT32_MAX; /* taken: compacted out below */
      tail += nb;
      if (nb) got++;
    }
    /* The fill entries the frames took leave the table; the others keep their order. */
    uint32_t w = base;
    for (uint32_t at = base; at < have; at++)
      if (fill->e[at] != UINT32_MAX) fill->e[w++] = fill->e[at];
    *fill->count = w;
    __atomic_store_n(rtail, tail, __ATOMIC_RELEASE);
    frames += got;
    if (empty || got < k) break;
    want = k * 2 > TB_MAX ? TB_MAX : k * 2;
  }
  b->rx_hint = frames;
  return frames;
}

/*
 * Send: up to TB_MAX frames from the TX ring in one submission, linked (IOSQE_IO_LINK), so a
 * write that fails cancels the ones after it and the ring keeps its order: the frames from the
 * first that was not written stay in the ring (EAGAIN, cancelled) or are dropped and counted
 * (the device is down: EIO; another error), as the one-at-a-time path does.
 */
static uint32_t tx_batch(nic_t *n, ring_t *r, uint8_t *meta, table_t *done, int *err) {
  struct tap_batch *b = n->tb;
  uint32_t frames = 0, vn = n->vnet_sz ? 1 : 0;
  uint32_t *rhead = (uint32_t *)(r->p + 4), *rtail = (uint32_t *)(r->p + 8);
  for (;;) {
    uint32_t head = __atomic_load_n(rhead, __ATOMIC_RELAXED), tail = __atomic_load_n(rtail, __ATOMIC_ACQUIRE);
    uint32_t pos = head, nf = 0, slots = 0, sqes = 0;
    struct io_uring_sqe *last = NULL;
    while (nf < TB_MAX && pos != tail) {
      tx_frame f;
      if (!tx_gather(n, r, pos, tail, b->iov[nf], b->idx[nf], &f)) break; /* the producer is not done */
      uint32_t k = f.k, fl0 = f.fl0, bad = f.bad;
      size_t total = f.total;
      if (done->cap - *done->count < slots + k) break; /* no room to report completions: later */
      b->pos[nf] = pos;
      b->k[nf] = k;
      b->bad[nf] = bad;
      b->total[nf] = total;
      b->res[nf] = 0;
      if (!bad) {
        tx_vnet(&b->vh[nf], meta, r, pos, fl0);
        b->iov[nf][0].iov_base = &b->vh[nf];
        b->iov[nf][0].iov_len = n->vnet_sz;
        last = tb_queue(n, IORING_OP_WRITEV, b->iov[nf] + 1 - vn, k + vn, nf);
        last->flags = IOSQE_IO_LINK;
        sqes++;
      }
      pos += k;
      slots += k;
      nf++;
    }
    if (nf == 0) break;
    if (sqes) {
      last->flags = 0; /* the chain ends at the batch's last frame */
      int sr = tb_submit(n, sqes, nf);
      if (sr < 0) {
        n->st.tx_errors++;
        *err = -sr;
        break;
      }
    }
    bool stop = false, again = true;
    for (uint32_t i = 0; i < nf && !stop; i++) {
      int32_t w = b->res[i];
      if (b->bad[i]) {
        n->st.tx_dropped++;
      } else if (w == -ECANCELED) {
        stop = true; /* an earlier write failed: this one and the rest go in the next submission */
        break;
      } else if (w == -EAGAIN) {
        n->st.tx_eagain++;
        stop = true;
        again = false;
        break;
      } else if (w == -EIO) {
        n->st.tx_dropped++; /* the device is down (not IFF_UP): dropped, no error */
      } else if (w < 0) {
        n->st.tx_errors++;
        n->st.tx_dropped++;
        *err = -w;
      } else {
        frames++;
        n->st.tx_frames++;
        n->st.tx_slots += b->k[i];
        n->st.tx_bytes += b->total[i];
      }
      for (uint32_t j = 0; j < b->k[i]; j++)
        if (b->idx[i][j] < n->buf_count) done->e[(*done->count)++] = b->idx[i][j];
      __atomic_store_n(rhead, b->pos[i] + b->k[i], __ATOMIC_RELEASE);
    }
    if (!again) break;
  }
  return frames;
}

uint32_t tap_rx(nic_t *n, ring_t *r, uint8_t *meta, table_t *fill, int *err) {
  return n->tb ? rx_batch(n, r, meta, fill, err) : rx_one(n, r, meta, fill, err);
}

uint32_t tap_tx(nic_t *n, ring_t *r, uint8_t *meta, table_t *done, int *err) {
  return n->tb ? tx_batch(n, r, meta, done, err) : tx_one(n, r, meta, done, err);
}

void tap_close(nic_t *n) {
  uring_free(&n->tb->u);
  free(n->tb);
  n->tb = NULL;
}
