/*
 * pmstack_nic: frame I/O between Linux NIC queues (TAP, AF_XDP) and the PM pool's buffers,
 * which live inside a WebAssembly.Memory. Plain C on node_api.h; raw syscalls; Linux only.
 * See docs/nic.md for the ring, fill/done table and slot-flag formats.
 */
#ifndef PMSTACK_NIC_H
#define PMSTACK_NIC_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>
#include <uv.h>

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define BUF_SIZE 2048u
#define BUF_SHIFT 11
/* Ring format (assembly/layout.ts). */
#define RING_HDR 16u
#define SLOT_SIZE 16u
#define SF_MORE 1u
/* NIC metadata bits in a slot's flags word (docs/nic.md); only on a frame's first slot. */
#define SF_NEEDS_CSUM (1u << 8) /* virtio-net NEEDS_CSUM: complete the checksum at csum_start+csum_offset */
#define SF_CSUM_VALID (1u << 9) /* virtio-net DATA_VALID: checksum already verified */
#define SF_GSO_ECN (1u << 10)
#define SF_GSO_SHIFT 12 /* bits 12..15: virtio gso_type (1 TCPV4, 3 UDP, 4 TCPV6, 5 UDP_L4) */
#define SF_GSO_MASK (0xfu << SF_GSO_SHIFT)
#define SF_NIC_META (SF_NEEDS_CSUM | SF_CSUM_VALID | SF_GSO_ECN | SF_GSO_MASK)
#define META_SIZE 8u /* side table entry: u16 csum_start, u16 csum_offset, u16 gso_size, u16 hdr_len */
#define MAX_CHAIN 40   /* slots in one frame: 34 * 2048 covers a 64 KiB GSO superframe */

enum { NIC_TAP = 1, NIC_XDP = 2 };

typedef struct {
  uint64_t syscalls, rx_calls, tx_calls, rx_frames, rx_slots, rx_bytes, tx_frames, tx_slots, tx_bytes;
  uint64_t rx_eagain, rx_no_room, rx_errors, rx_bad, tx_eagain, tx_errors, tx_dropped, tx_copied_bytes, rx_copied_bytes, kicks,
      wakeups, polls;
} nic_stats;

typedef struct xdp_state xdp_state;

typedef struct nic {
  int kind;
  int fd;
  bool closed;
  uint8_t *base;     /* byte 0 of the Wasm memory */
  uint64_t mem_size; /* its byteLength when opened (the pool never grows it afterwards) */
  uint64_t buf_base; /* memory offset of buffer 0 */
  uint32_t buf_count;
  napi_ref mem_ref; /* keeps the Memory, and so `base`, alive */
  char ifname[IF_NAMESIZE];
  char copies[512];
  nic_stats st;
  /* TAP */
  int vnet_sz;
  bool offload, uso;
  uint32_t rx_need; /* buffers one read must be offered: a whole superframe when offloads are on */
  struct tap_batch *tb; /* io_uring batching (NULL: one readv/writev syscall per frame) */
  char batch[160];      /* how frames are batched, or why they are not */
  char steer[160];      /* multi-queue: how the kernel picks each frame's queue */
  /* AF_XDP */
  xdp_state *x;
  /* readiness */
  napi_env env;
  uv_poll_t *poll;
  int poll_events;
  bool poll_rearm; /* the host's poll is one-shot (Deno): re-arm after each callback */
  bool poll_unref;  /* pollRef(handle, false): the poll does not keep the event loop alive */
  napi_ref cb_ref, self_ref;
  napi_async_context actx;
  bool hooked; /* nic_env_cleanup is registered */
} nic_t;

/* helpers in nic.c */
napi_value nic_throw(napi_env env, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
napi_value nic_throw_sys(napi_env env, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *nic_errname(int e);
int nic_enter_netns(napi_env env, const char *path, int *saved);
int nic_netns_switch(const char *path, int *saved, int *step);
struct bpf_insn;
int nic_bpf_load(uint32_t type, const struct bpf_insn *insns, uint32_t count, const char *name, char *log,
                 size_t log_size);
void nic_leave_netns(int saved);
static inline uint8_t *nic_buf(nic_t *n, uint32_t idx) { return n->base + n->buf_base + ((uint64_t)idx << BUF_SHIFT); }

/* A ring / table at a memory offset, validated. */
typedef struct {
  uint8_t *p;
  uint32_t mask;
} ring_t;
typedef struct {
  uint32_t *count, cap, *e;
} table_t;

/* tap.c */
int tap_open(napi_env env, nic_t *n, const char *name, uint32_t flags, const char *netns);
uint32_t tap_rx(nic_t *n, ring_t *r, uint8_t *meta, table_t *fill, int *err);
uint32_t tap_tx(nic_t *n, ring_t *r, uint8_t *meta, table_t *done, int *err);
void tap_close(nic_t *n);

/* xdp.c */
int xdp_open(napi_env env, nic_t *n, const char *ifname, uint32_t queue, uint32_t flags, uint32_t ring_size,
             const char *netns, const char *medium, const char *steer_peer, uint32_t steer_queues,
             const char *steer_ns);
uint32_t xdp_rx(nic_t *n, ring_t *r, table_t *fill, int *err);
uint32_t xdp_tx(nic_t *n, ring_t *r, table_t *done, int *err);
uint32_t xdp_outstanding(nic_t *n, uint32_t *out, uint32_t cap);
/* The kernel's counters for the socket (XDP_STATISTICS): frames it dropped before our RX ring. 0 or errno. */
int xdp_kernel_stats(nic_t *n, uint64_t out[6]);
void xdp_close(nic_t *n);
napi_value xdp_info(napi_env env, nic_t *n, napi_value o);

#endif
