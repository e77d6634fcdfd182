/*
 * Native lwIP benchmark harness for pmstack (`npm run bench -- core` peer figures).
 *
 * One process, one thread, lwIP raw API (Debian's liblwip 2.1.3, used without tcpip_init so no
 * tcpip thread and no locking), two Ethernet netifs A (198.18.0.1) and B (198.18.0.2) joined by
 * an in-memory wire. Each netif's linkoutput copies the frame into a fresh, exactly sized
 * PBUF_RAM pbuf (this copy is the wire) and queues it for the other side; the main loop hands
 * queued frames to netif->input (ethernet_input, so ARP and Ethernet headers are real) and runs
 * sys_check_timeouts() against the library's real millisecond clock (sys_now()).
 *
 * Measurements (each timed with CLOCK_MONOTONIC, default 2 s each, --seconds N):
 *   bulk        one connection, A writes as fast as the send buffer / window allow, B's recv
 *               callback tcp_recved()s at once; payload goodput in Gbit/s, every byte checked.
 *   rr_1conn    64 B request, 64 B response, one connection, next request after the response.
 *   rr_100conn  100 connections, each with exactly one 64 B request in flight.
 *   conn_per_s  connect, accept, close on both sides with the full FIN exchange, repeat
 *               (serially); the client's TIME_WAIT pcb is aborted once reached (like
 *               SO_LINGER 0 after the handshake), so ports never run out.
 * Output: one JSON line on stdout; progress and diagnostics on stderr.
 *
 * Build: node bench/lwip/build.mjs (needs liblwip-dev). See bench/lwip/README.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <malloc.h>
#include <stdarg.h>

/* Debian's own lwipopts.h (the one the library was compiled with) is picked up from
 * /usr/include/lwip: struct layouts must match the library, so we must not change options. */
#include "lwip/opt.h"
#include "lwip/init.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/timeouts.h"
#include "lwip/etharp.h"
#include "netif/ethernet.h"

/* <lwip/inet.h> pulls glibc's <netinet/tcp.h>, whose `#define TCP_MSS 512` silently replaces
 * lwIP's TCP_MSS (this is what happened to the library's memp.c). Make sure we saw 1460. */
_Static_assert(TCP_MSS == 1460, "TCP_MSS was redefined (netinet/tcp.h included?)");
_Static_assert(NO_SYS == 0, "expected Debian's lwipopts.h (NO_SYS 0)");

#define PORT_SELFTEST 5000
#define PORT_BULK 5001
#define PORT_RR 5002
#define PORT_CC 5003
#define RR_SIZE 64
#define RR_MAX_CONN 100

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "lwip-harness: FATAL: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------------------------ */
/* The wire                                                                                     */
/* ------------------------------------------------------------------------------------------ */

#define WIRE_SLOTS 65536u /* power of two */

typedef struct {
  struct pbuf *slot[WIRE_SLOTS];
  uint32_t head, tail;
  uint64_t frames, bytes;
} wire_q;

static wire_q to_a, to_b; /* frames travelling towards A, towards B */
static struct netif nif_a, nif_b;
static ip4_addr_t ip_a, ip_b, netmask, gw_none;
static ip_addr_t addr_b; /* B's address as the dual-stack ip_addr_t the TCP API takes */

/* self-test hook: when set, the next A->B frame carrying TCP payload is sent twice, first with
 * one payload byte flipped (the TCP checksum must make B drop it), then intact. */
static int corrupt_next_data_frame;
static uint64_t corrupted_frames;

static void wire_push(wire_q *q, struct pbuf *c) {
  if (q->tail - q->head >= WIRE_SLOTS) die("wire queue overflow");
  q->slot[q->tail++ & (WIRE_SLOTS - 1)] = c;
  q->frames++;
  q->bytes += c->tot_len;
}

static struct pbuf *wire_copy(struct pbuf *p) {
  struct pbuf *c = pbuf_alloc(PBUF_RAW, p->tot_len, PBUF_RAM); /* one piece, exact size */
  if (c == NULL) die("pbuf_alloc(%u) failed", p->tot_len);
  if (pbuf_copy_partial(p, c->payload, p->tot_len, 0) != p->tot_len) die("pbuf_copy_partial");
  return c;
}

static err_t wire_linkoutput(struct netif *nif, struct pbuf *p) {
  wire_q *q = (nif == &nif_a) ? &to_b : &to_a;
  if (corrupt_next_data_frame && nif == &nif_a && p->tot_len > 14 + 20 + 20) {
    struct pbuf *bad = wire_copy(p);
    ((uint8_t *)bad->payload)[bad->tot_len - 1] ^= 0x20; /* last payload byte */
    wire_push(q, bad);
    corrupt_next_data_frame = 0;
    corrupted_frames++;
  }
  wire_push(q, wire_copy(p));
  return ERR_OK;
}

static err_t wire_netif_init(struct netif *nif) {
  nif->name[0] = 'w';
  nif->name[1] = (nif == &nif_a) ? 'a' : 'b';
  nif->hwaddr_len = 6;
  static const uint8_t mac_a[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x0a};
  static const uint8_t mac_b[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x0b};
  memcpy(nif->hwaddr, nif == &nif_a ? mac_a : mac_b, 6);
  nif->mtu = 1500;
  nif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_LINK_UP;
  nif->output = etharp_output;
  nif->linkoutput = wire_linkoutput;
  return ERR_OK;
}

static inline int deliver(wire_q *q, struct netif *nif) {
  if (q->head == q->tail) return 0;
  struct pbuf *p = q->slot[q->head++ & (WIRE_SLOTS - 1)];
  if (nif->input(p, nif) != ERR_OK) pbuf_free(p);
  return 1;
}

/* Deliver one frame in each direction (if any). Returns the number delivered. */
static inline int pump(void) { return deliver(&to_b, &nif_b) + deliver(&to_a, &nif_a); }

static uint64_t idle_timer_checks;

/* Deliver until both queues are empty. Runs the timers now and then. */
static void drain(void) {
  unsigned n = 0;
  while (pump())
    if ((++n & 4095) == 0) sys_check_timeouts();
  sys_check_timeouts();
}

/* Abort every pcb in TIME_WAIT (both sides' pcbs live in this one stack instance). */
static unsigned reap_time_wait(void) {
  unsigned n = 0;
  while (tcp_tw_pcbs != NULL) {
    tcp_abort(tcp_tw_pcbs);
    n++;
  }
  return n;
}

static unsigned count_pcbs(struct tcp_pcb *list) {
  unsigned n = 0;
  for (; list; list = list->next) n++;
  return n;
}

/* Run the wire until cond() is true, or die after `limit_s` seconds. */
static void run_until(int (*cond)(void), double limit_s, const char *what) {
  double t_end = now_s() + limit_s;
  unsigned n = 0;
  while (!cond()) {
    if (!pump()) {
      sys_check_timeouts();
      idle_timer_checks++;
    }
    if ((++n & 1023) == 0 && now_s() > t_end) die("timeout waiting for %s", what);
  }
}

static struct tcp_pcb *listen_on(uint16_t port, tcp_accept_fn acc) {
  struct tcp_pcb *l = tcp_new();
  if (!l) die("tcp_new");
  tcp_bind_netif(l, &nif_b);
  if (tcp_bind(l, &addr_b, port) != ERR_OK) die("tcp_bind %u", port);
  struct tcp_pcb *lp = tcp_listen_with_backlog(l, 255);
  if (!lp) die("tcp_listen");
  tcp_accept(lp, acc);
  return lp;
}

static struct tcp_pcb *client_new(void *arg) {
  struct tcp_pcb *c = tcp_new();
  if (!c) die("tcp_new");
  tcp_bind_netif(c, &nif_a); /* route out of A although B's address is on both subnets */
  tcp_arg(c, arg);
  tcp_nagle_disable(c);
  return c;
}

static void fatal_err(void *arg, err_t err) {
  (void)arg;
  die("unexpected connection error %d", err);
}

/* ------------------------------------------------------------------------------------------ */
/* Data pattern: stream byte at offset o is pat[o % PAT_PERIOD]; pat is 2 periods long so any    */
/* chunk up to PAT_PERIOD bytes is contiguous.                                                   */
/* ------------------------------------------------------------------------------------------ */
#define PAT_PERIOD 65521u /* prime, not a multiple of the MSS */
static uint8_t pat[2 * PAT_PERIOD];

static void pat_init(void) {
  uint32_t x = 0x12345678u;
  for (unsigned i = 0; i < PAT_PERIOD; i++) {
    x = x * 1664525u + 1013904223u;
    pat[i] = pat[i + PAT_PERIOD] = (uint8_t)(x >> 24);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Bulk                                                                                          */
/* ------------------------------------------------------------------------------------------ */
static struct {
  struct tcp_pcb *cli, *srv;
  int connected, sending, srv_closed;
  uint64_t sent, rcvd, bad;
  uint32_t max_write;
} bk;

static void bulk_fill(struct tcp_pcb *pcb) {
  while (bk.sending) {
    uint32_t space = tcp_sndbuf(pcb);
    if (space < TCP_MSS) break; /* wait for an ACK rather than dribble small segments */
    uint32_t n = space < bk.max_write ? space : bk.max_write;
    uint32_t off = (uint32_t)(bk.sent % PAT_PERIOD);
    if (n > PAT_PERIOD) n = PAT_PERIOD;
    err_t e = tcp_write(pcb, pat + off, (u16_t)n, TCP_WRITE_FLAG_COPY);
    if (e == ERR_MEM) break; /* segment queue (TCP_SND_QUEUELEN) full */
    if (e != ERR_OK) die("bulk tcp_write %d", e);
    bk.sent += n;
  }
}

static err_t bulk_sent(void *arg, struct tcp_pcb *pcb, u16_t len) {
  (void)arg;
  (void)len;
  bulk_fill(pcb); /* tcp_input calls tcp_output after this callback */
  return ERR_OK;
}

static err_t bulk_cli_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  (void)arg;
  (void)err;
  if (p) { /* not expected */
    tcp_recved(pcb, p->tot_len);
    pbuf_free(p);
  }
  return ERR_OK;
}

static err_t bulk_srv_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  (void)arg;
  (void)err;
  if (p == NULL) {
    tcp_close(pcb);
    bk.srv_closed = 1;
    return ERR_OK;
  }
  uint16_t tot = p->tot_len;
  for (struct pbuf *q = p; q; q = q->next) {
    uint32_t off = (uint32_t)(bk.rcvd % PAT_PERIOD);
    if (memcmp(q->payload, pat + off, q->len) != 0) bk.bad++;
    bk.rcvd += q->len;
  }
  tcp_recved(pcb, tot);
  pbuf_free(p);
  return ERR_OK;
}

static err_t bulk_accept(void *arg, struct tcp_pcb *npcb, err_t err) {
  (void)arg;
  if (err != ERR_OK || !npcb) die("bulk accept %d", err);
  bk.srv = npcb;
  tcp_recv(npcb, bulk_srv_recv);
  tcp_err(npcb, fatal_err);
  return ERR_OK;
}

static err_t bulk_connected(void *arg, struct tcp_pcb *pcb, err_t err) {
  (void)arg;
  (void)pcb;
  if (err != ERR_OK) die("bulk connect %d", err);
  bk.connected = 1;
  return ERR_OK;
}

static int bulk_ready(void) { return bk.connected && bk.srv != NULL; }
static int bulk_closed(void) { return bk.srv_closed; }

/* Config facts read back from live pcbs (what the library actually did). */
static struct {
  unsigned mss, rcv_wnd_init, snd_buf_init, snd_queuelen_max, rcv_scale, snd_scale, wnd_scale_on;
  unsigned peer_wnd_max, srv_mss, rcv_wnd_est, peer_wnd;
} cfg;

static double test_bulk(double seconds) {
  memset(&bk, 0, sizeof bk);
  bk.max_write = 16 * 1024;
  struct tcp_pcb *lp = listen_on(PORT_BULK, bulk_accept);
  bk.cli = client_new(NULL);
  tcp_recv(bk.cli, bulk_cli_recv);
  tcp_sent(bk.cli, bulk_sent);
  tcp_err(bk.cli, fatal_err);
  if (tcp_connect(bk.cli, &addr_b, PORT_BULK, bulk_connected) != ERR_OK) die("tcp_connect");
  run_until(bulk_ready, 5, "bulk connection");

  /* start */
  uint64_t frames0 = to_b.frames + to_a.frames;
  double t0 = now_s(), t_stop = t0 + seconds, t1 = t0;
  bk.sending = 1;
  bulk_fill(bk.cli);
  tcp_output(bk.cli);
  unsigned n = 0;
  unsigned qmax = 0;
  for (;;) {
    if (!pump()) {
      if (!bk.sending && bk.rcvd == bk.sent) break;
      sys_check_timeouts();
      idle_timer_checks++;
    }
    if ((++n & 1023) == 0) {
      if (bk.cli->snd_queuelen > qmax) qmax = bk.cli->snd_queuelen;
      if (bk.cli->snd_wnd > cfg.peer_wnd_max) cfg.peer_wnd_max = bk.cli->snd_wnd;
      if (bk.sending) {
        double t = now_s();
        if (t >= t_stop) bk.sending = 0;
      }
      sys_check_timeouts();
    }
  }
  t1 = now_s();
  cfg.snd_queuelen_max = qmax;
  uint64_t frames = to_b.frames + to_a.frames - frames0;

  if (bk.bad) die("bulk: %" PRIu64 " pbufs with wrong content", bk.bad);
  if (bk.rcvd != bk.sent) die("bulk: received %" PRIu64 " != sent %" PRIu64, bk.rcvd, bk.sent);
  double gbps = (double)bk.rcvd * 8 / (t1 - t0) / 1e9;
  uint64_t segs = (bk.rcvd + cfg.mss - 1) / cfg.mss;
  fprintf(stderr,
          "bulk: %" PRIu64 " bytes (%.2f GiB) in %.3f s = %.2f Gbit/s; content verified; "
          "%" PRIu64 " frames on the wire (~%" PRIu64 " data segments, %.2f us/segment); "
          "max queued segments %u, peer window max %u\n",
          bk.rcvd, bk.rcvd / 1073741824.0, t1 - t0, gbps, frames, segs,
          (t1 - t0) * 1e6 / (double)segs, qmax, cfg.peer_wnd_max);

  /* teardown: client closes, server closes on FIN; reap TIME_WAIT */
  tcp_close(bk.cli);
  run_until(bulk_closed, 5, "bulk close");
  drain();
  reap_time_wait();
  tcp_close(lp);
  return gbps;
}

/* ------------------------------------------------------------------------------------------ */
/* Request/response                                                                             */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
  struct tcp_pcb *pcb;
  uint32_t id;
  uint32_t seq;       /* sequence number of the request in flight */
  uint8_t req[RR_SIZE];
  uint8_t want[RR_SIZE]; /* the response expected for req */
  uint8_t acc[RR_SIZE];
  unsigned have;
  int connected;
  uint64_t done;
} rr_cli;

typedef struct {
  uint8_t acc[RR_SIZE];
  unsigned have;
  int used;
} rr_srv;

static struct {
  rr_cli cli[RR_MAX_CONN];
  rr_srv srv[RR_MAX_CONN];
  unsigned nconn, accepted, connected, srv_closed;
  int running;
  uint64_t total, bad;
} rr;

static void rr_make_req(rr_cli *c) {
  uint32_t s = c->seq;
  memcpy(c->req, &c->id, 4);
  memcpy(c->req + 4, &s, 4);
  for (unsigned i = 8; i < RR_SIZE; i++) c->req[i] = (uint8_t)(s * 31u + i * 7u + c->id);
  memcpy(c->want, c->req, 8);
  for (unsigned i = 8; i < RR_SIZE; i++) c->want[i] = c->req[i] ^ 0xA5;
}

/* the response is the request with bytes 8.. xored with 0xA5 */
static void rr_send_req(rr_cli *c) {
  rr_make_req(c);
  err_t e = tcp_write(c->pcb, c->req, RR_SIZE, TCP_WRITE_FLAG_COPY);
  if (e != ERR_OK) die("rr client tcp_write %d", e);
}

static err_t rr_cli_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  rr_cli *c = arg;
  (void)err;
  if (p == NULL) return ERR_OK; /* server closed (teardown) */
  uint16_t tot = p->tot_len;
  for (struct pbuf *q = p; q; q = q->next) {
    const uint8_t *d = q->payload;
    unsigned len = q->len;
    while (len) {
      unsigned k = RR_SIZE - c->have;
      if (k > len) k = len;
      memcpy(c->acc + c->have, d, k);
      c->have += k;
      d += k;
      len -= k;
      if (c->have == RR_SIZE) {
        c->have = 0;
        if (memcmp(c->acc, c->want, RR_SIZE) != 0) rr.bad++;
        c->done++;
        rr.total++;
        c->seq++;
        if (rr.running) rr_send_req(c); /* sent by tcp_input's tcp_output after we return */
      }
    }
  }
  tcp_recved(pcb, tot);
  pbuf_free(p);
  return ERR_OK;
}

static err_t rr_srv_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  rr_srv *s = arg;
  (void)err;
  if (p == NULL) {
    tcp_close(pcb);
    rr.srv_closed++;
    return ERR_OK;
  }
  uint16_t tot = p->tot_len;
  for (struct pbuf *q = p; q; q = q->next) {
    const uint8_t *d = q->payload;
    unsigned len = q->len;
    while (len) {
      unsigned k = RR_SIZE - s->have;
      if (k > len) k = len;
      memcpy(s->acc + s->have, d, k);
      s->have += k;
      d += k;
      len -= k;
      if (s->have == RR_SIZE) {
        s->have = 0;
        uint8_t resp[RR_SIZE];
        memcpy(resp, s->acc, 8);
        for (unsigned i = 8; i < RR_SIZE; i++) resp[i] = s->acc[i] ^ 0xA5;
        err_t e = tcp_write(pcb, resp, RR_SIZE, TCP_WRITE_FLAG_COPY);
        if (e != ERR_OK) die("rr server tcp_write %d", e);
      }
    }
  }
  tcp_recved(pcb, tot);
  pbuf_free(p);
  return ERR_OK;
}

static err_t rr_accept(void *arg, struct tcp_pcb *npcb, err_t err) {
  (void)arg;
  if (err != ERR_OK || !npcb) die("rr accept %d", err);
  if (rr.accepted >= RR_MAX_CONN) die("too many accepts");
  rr_srv *s = &rr.srv[rr.accepted++];
  memset(s, 0, sizeof *s);
  s->used = 1;
  tcp_arg(npcb, s);
  tcp_nagle_disable(npcb);
  tcp_recv(npcb, rr_srv_recv);
  tcp_err(npcb, fatal_err);
  return ERR_OK;
}

static err_t rr_connected(void *arg, struct tcp_pcb *pcb, err_t err) {
  rr_cli *c = arg;
  (void)pcb;
  if (err != ERR_OK) die("rr connect %d", err);
  c->connected = 1;
  rr.connected++;
  return ERR_OK;
}

static int rr_all_up(void) { return rr.connected == rr.nconn && rr.accepted == rr.nconn; }
static int rr_all_closed(void) { return rr.srv_closed == rr.nconn; }

static double test_rr(unsigned nconn, double seconds) {
  memset(&rr, 0, sizeof rr);
  rr.nconn = nconn;
  struct tcp_pcb *lp = listen_on(PORT_RR, rr_accept);
  for (unsigned i = 0; i < nconn; i++) {
    rr_cli *c = &rr.cli[i];
    c->id = i;
    c->pcb = client_new(c);
    tcp_recv(c->pcb, rr_cli_recv);
    tcp_err(c->pcb, fatal_err);
    if (tcp_connect(c->pcb, &addr_b, PORT_RR, rr_connected) != ERR_OK) die("tcp_connect");
  }
  run_until(rr_all_up, 5, "rr connections");
  drain();

  uint64_t frames0 = to_b.frames + to_a.frames;
  rr.running = 1;
  double t0 = now_s(), t_stop = t0 + seconds;
  for (unsigned i = 0; i < nconn; i++) {
    rr_send_req(&rr.cli[i]);
    tcp_output(rr.cli[i].pcb);
  }
  unsigned n = 0;
  for (;;) {
    if (!pump()) {
      if (!rr.running) break;
      sys_check_timeouts();
      idle_timer_checks++;
    }
    if ((++n & 1023) == 0) {
      if (rr.running && now_s() >= t_stop) rr.running = 0;
      sys_check_timeouts();
    }
  }
  double t1 = now_s();
  uint64_t frames = to_b.frames + to_a.frames - frames0;
  if (rr.bad) die("rr: %" PRIu64 " responses did not match their request", rr.bad);
  uint64_t mn = UINT64_MAX, mx = 0;
  for (unsigned i = 0; i < nconn; i++) {
    rr_cli *c = &rr.cli[i];
    if (c->have) die("rr: partial response left on connection %u", i);
    if (c->done < mn) mn = c->done;
    if (c->done > mx) mx = c->done;
  }
  double tps = (double)rr.total / (t1 - t0);
  fprintf(stderr,
          "rr_%uconn: %" PRIu64 " transactions in %.3f s = %.3f M/s; all responses matched; "
          "%" PRIu64 " frames (%.2f per transaction); per-connection min/max %" PRIu64 "/%" PRIu64
          "\n",
          nconn, rr.total, t1 - t0, tps / 1e6, frames, (double)frames / (double)rr.total, mn, mx);

  for (unsigned i = 0; i < nconn; i++) tcp_close(rr.cli[i].pcb);
  run_until(rr_all_closed, 5, "rr close");
  drain();
  reap_time_wait();
  tcp_close(lp);
  return tps;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections per second                                                                        */
/* ------------------------------------------------------------------------------------------ */
static struct {
  struct tcp_pcb *tw; /* client pcb that reached TIME_WAIT */
  uint64_t connected, accepted, srv_fin, cli_fin, tw_aborted;
} cc;

static err_t cc_cli_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  (void)arg;
  (void)err;
  if (p) die("cc: unexpected data");
  cc.cli_fin++;
  if (pcb->state == TIME_WAIT) cc.tw = pcb; /* abort it after this input is done (ACK sent) */
  return ERR_OK;
}

static err_t cc_srv_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  (void)arg;
  (void)err;
  if (p) die("cc: unexpected data");
  cc.srv_fin++;
  if (tcp_close(pcb) != ERR_OK) die("cc: server tcp_close");
  return ERR_OK;
}

static err_t cc_accept(void *arg, struct tcp_pcb *npcb, err_t err) {
  (void)arg;
  if (err != ERR_OK || !npcb) die("cc accept %d", err);
  cc.accepted++;
  tcp_recv(npcb, cc_srv_recv);
  tcp_err(npcb, fatal_err);
  return ERR_OK;
}

static err_t cc_connected(void *arg, struct tcp_pcb *pcb, err_t err) {
  (void)arg;
  if (err != ERR_OK) die("cc connect %d", err);
  cc.connected++;
  if (tcp_close(pcb) != ERR_OK) die("cc: client tcp_close");
  return ERR_OK;
}

static double test_cc(double seconds) {
  memset(&cc, 0, sizeof cc);
  struct tcp_pcb *lp = listen_on(PORT_CC, cc_accept);
  uint64_t frames0 = to_b.frames + to_a.frames;
  uint64_t done = 0;
  double t0 = now_s(), t_stop = t0 + seconds, t1;
  uint16_t port_min = 0xffff, port_max = 0;
  for (;;) {
    struct tcp_pcb *c = client_new(NULL);
    tcp_recv(c, cc_cli_recv);
    tcp_err(c, fatal_err);
    if (tcp_connect(c, &addr_b, PORT_CC, cc_connected) != ERR_OK) die("cc tcp_connect");
    if (c->local_port < port_min) port_min = c->local_port;
    if (c->local_port > port_max) port_max = c->local_port;
    /* SYN, SYN|ACK, ACK|FIN (client closes in its connected callback), FIN|ACK, ACK */
    while (pump())
      ;
    if (cc.tw == NULL) die("cc: client not in TIME_WAIT after connection %" PRIu64, done);
    if (tcp_active_pcbs != NULL)
      die("cc: %u pcbs still active after connection %" PRIu64, count_pcbs(tcp_active_pcbs), done);
    tcp_abort(cc.tw); /* TIME_WAIT -> freed, no RST sent */
    cc.tw = NULL;
    cc.tw_aborted++;
    done++;
    if ((done & 255) == 0) {
      sys_check_timeouts();
      t1 = now_s();
      if (t1 >= t_stop) break;
    }
  }
  t1 = now_s();
  uint64_t frames = to_b.frames + to_a.frames - frames0;
  if (cc.connected != done || cc.accepted != done || cc.srv_fin != done || cc.cli_fin != done)
    die("cc: counts differ: done %" PRIu64 " connected %" PRIu64 " accepted %" PRIu64
        " srv_fin %" PRIu64 " cli_fin %" PRIu64,
        done, cc.connected, cc.accepted, cc.srv_fin, cc.cli_fin);
  if (tcp_tw_pcbs != NULL) die("cc: TIME_WAIT pcbs left");
  double cps = (double)done / (t1 - t0);
  fprintf(stderr,
          "conn_per_s: %" PRIu64 " connections opened and closed in %.3f s = %.3f M/s; "
          "%.2f frames per connection; client ports %u..%u reused\n",
          done, t1 - t0, cps / 1e6, (double)frames / (double)done, port_min, port_max);
  tcp_close(lp);
  return cps;
}

/* ------------------------------------------------------------------------------------------ */
/* Self-test: a corrupted TCP segment must be dropped by B (software checksum check on).         */
/* ------------------------------------------------------------------------------------------ */
static struct {
  struct tcp_pcb *cli, *srv;
  int connected, closed;
  uint64_t rcvd, bad;
} st;

static err_t st_srv_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  (void)arg;
  (void)err;
  if (!p) {
    tcp_close(pcb);
    st.closed = 1;
    return ERR_OK;
  }
  for (struct pbuf *q = p; q; q = q->next) {
    if (memcmp(q->payload, pat + st.rcvd, q->len) != 0) st.bad++;
    st.rcvd += q->len;
  }
  tcp_recved(pcb, p->tot_len);
  pbuf_free(p);
  return ERR_OK;
}
static err_t st_accept(void *arg, struct tcp_pcb *npcb, err_t err) {
  (void)arg;
  (void)err;
  st.srv = npcb;
  tcp_recv(npcb, st_srv_recv);
  tcp_err(npcb, fatal_err);
  return ERR_OK;
}
static err_t st_connected(void *arg, struct tcp_pcb *pcb, err_t err) {
  (void)arg;
  (void)pcb;
  (void)err;
  st.connected = 1;
  return ERR_OK;
}
static int st_up(void) { return st.connected && st.srv; }
static int st_done(void) { return st.closed; }

static const char *selftest(void) {
  memset(&st, 0, sizeof st);
  struct tcp_pcb *lp = listen_on(PORT_SELFTEST, st_accept);
  st.cli = client_new(NULL);
  cfg.rcv_wnd_init = st.cli->rcv_wnd;
  cfg.snd_buf_init = st.cli->snd_buf;
  tcp_err(st.cli, fatal_err);
  if (tcp_connect(st.cli, &addr_b, PORT_SELFTEST, st_connected) != ERR_OK) die("tcp_connect");
  run_until(st_up, 5, "self-test connection (ARP + handshake)");
  drain();
  cfg.mss = st.cli->mss;
  cfg.srv_mss = st.srv->mss;
  cfg.rcv_wnd_est = st.cli->rcv_wnd;
  cfg.peer_wnd = st.cli->snd_wnd;
#if LWIP_WND_SCALE
  cfg.rcv_scale = st.cli->rcv_scale;
  cfg.snd_scale = st.cli->snd_scale;
  cfg.wnd_scale_on = (st.cli->flags & TF_WND_SCALE) ? 1 : 0;
#endif
  corrupt_next_data_frame = 1;
  if (tcp_write(st.cli, pat, 1000, TCP_WRITE_FLAG_COPY) != ERR_OK) die("selftest write");
  tcp_output(st.cli);
  drain();
  if (corrupted_frames != 1) die("selftest: no frame corrupted");
  const char *res = (st.bad == 0 && st.rcvd == 1000) ? "on" : "NOT CHECKED";
  fprintf(stderr, "selftest: corrupted segment %s; intact copy delivered %" PRIu64 " bytes\n",
          st.bad ? "was ACCEPTED (checksum check off?)" : "was dropped", st.rcvd);
  tcp_close(st.cli);
  run_until(st_done, 5, "selftest close");
  drain();
  reap_time_wait();
  tcp_close(lp);
  return res;
}

/* ------------------------------------------------------------------------------------------ */

/* a measurement that was not run (--only) is reported as null */
static void fmt_num(char *buf, size_t n, double v, int decimals) {
  if (v < 0)
    snprintf(buf, n, "null");
  else
    snprintf(buf, n, "%.*f", decimals, v);
}

int main(int argc, char **argv) {
  double seconds = 2;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = atof(argv[++i]);
      if (!(seconds > 0)) die("--seconds must be > 0");
    } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
      only = argv[++i];
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fprintf(stderr, "usage: %s [--seconds N] [--only bulk|rr1|rr100|cc]\n", argv[0]);
      return 0;
    } else {
      die("unknown argument %s (usage: [--seconds N] [--only bulk|rr1|rr100|cc])", argv[i]);
    }
  }

  pat_init();
  lwip_init(); /* no tcpip_init(): no tcpip thread, so the core-lock assertion stays inactive */

  IP4_ADDR(&ip_a, 198, 18, 0, 1);
  IP4_ADDR(&ip_b, 198, 18, 0, 2);
  ip_addr_copy_from_ip4(addr_b, ip_b);
  IP4_ADDR(&netmask, 255, 254, 0, 0); /* 198.18.0.0/15 */
  ip4_addr_set_zero(&gw_none);
  if (!netif_add(&nif_a, &ip_a, &netmask, &gw_none, NULL, wire_netif_init, ethernet_input))
    die("netif_add A");
  if (!netif_add(&nif_b, &ip_b, &netmask, &gw_none, NULL, wire_netif_init, ethernet_input))
    die("netif_add B");
  netif_set_up(&nif_a);
  netif_set_up(&nif_b);
  drain(); /* gratuitous ARPs */

  /* the library's MEMP PBUF_POOL element size (compiled in memp.c, which saw TCP_MSS 512) */
  struct pbuf *pp = pbuf_alloc(PBUF_RAW, 1514, PBUF_POOL);
  unsigned pool_first_len = 0, pool_chain = 0;
  long pool_room = -1;
  if (pp) { /* nothing is written into it: it may be smaller than pbuf.c believes */
    pool_first_len = pp->len;
    pool_chain = pbuf_clen(pp);
    /* MEMP_MEM_MALLOC + MEM_LIBC_MALLOC: the element is a plain malloc() block */
    pool_room = (long)malloc_usable_size(pp) - (long)((uint8_t *)pp->payload - (uint8_t *)pp);
    pbuf_free(pp);
  }

  const char *checksums = selftest();
  fprintf(stderr,
          "lwip %s, Debian build: TCP_MSS %d, TCP_WND %d, TCP_SND_BUF %d, TCP_SND_QUEUELEN %d, "
          "LWIP_WND_SCALE %d (TCP_RCV_SCALE %d), MEMP_MEM_MALLOC %d, NO_SYS %d, checksums %s\n",
          LWIP_VERSION_STRING, TCP_MSS, TCP_WND, TCP_SND_BUF, TCP_SND_QUEUELEN, LWIP_WND_SCALE,
          TCP_RCV_SCALE, MEMP_MEM_MALLOC, NO_SYS, checksums);
  fprintf(stderr,
          "live pcbs: mss %u/%u (client/server), rcv_wnd %u at creation and %u once established, "
          "snd_buf %u, peer window %u, window scaling %s (rcv_scale %u, snd_scale %u)\n",
          cfg.mss, cfg.srv_mss, cfg.rcv_wnd_init, cfg.rcv_wnd_est, cfg.snd_buf_init, cfg.peer_wnd,
          cfg.wnd_scale_on ? "negotiated" : "off", cfg.rcv_scale, cfg.snd_scale);
  fprintf(stderr,
          "library PBUF_POOL: a 1514 B pool pbuf comes as %u piece(s), first claims %u B, but its "
          "malloc block has room for %ld B of payload (memp.c saw TCP_MSS 512, pbuf.c 1460): "
          "PBUF_POOL is unsafe in this build, the harness never uses it\n",
          pool_chain, pool_first_len, pool_room);

  double bulk = -1, rr1 = -1, rr100 = -1, cps = -1;
  if (!only || !strcmp(only, "bulk")) bulk = test_bulk(seconds);
  if (!only || !strcmp(only, "rr1")) rr1 = test_rr(1, seconds);
  if (!only || !strcmp(only, "rr100")) rr100 = test_rr(100, seconds);
  if (!only || !strcmp(only, "cc")) cps = test_cc(seconds);
  if (idle_timer_checks)
    fprintf(stderr, "note: the wire went idle %" PRIu64 " times while work was pending\n",
            idle_timer_checks);
  if (tcp_active_pcbs || tcp_tw_pcbs) die("pcbs left over at exit");

  char f[4][32];
  fmt_num(f[0], sizeof f[0], bulk, 3);
  fmt_num(f[1], sizeof f[1], rr1, 0);
  fmt_num(f[2], sizeof f[2], rr100, 0);
  fmt_num(f[3], sizeof f[3], cps, 0);
  printf("{\"system\":\"lwip\",\"bulk_gbps\":%s,\"rr_tps_1conn\":%s,\"rr_tps_100conn\":%s,"
         "\"conn_per_s\":%s,\"config\":{\"tcp_mss\":%u,\"tcp_wnd\":%u,\"tcp_snd_buf\":%u,"
         "\"wnd_scale\":%u,\"checksums\":\"%s\",\"tcp_snd_queuelen\":%u,\"lwip_version\":\"%s\","
         "\"link\":\"ethernet+etharp\",\"seconds\":%g}}\n",
         f[0], f[1], f[2], f[3], cfg.mss, cfg.rcv_wnd_init, cfg.snd_buf_init,
         cfg.wnd_scale_on ? cfg.rcv_scale : 0, checksums, (unsigned)TCP_SND_QUEUELEN,
         LWIP_VERSION_STRING, seconds);
  fflush(stdout);
  return 0;
}
