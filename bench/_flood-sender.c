// bench/flood's packet sender: spoofed TCP segments at a target rate, for a bounded time and
// count, then it stops by itself. bench/flood.mjs compiles it into os.tmpdir() at run time
// (cc -O2) and runs it inside the flood namespace it made; nothing of it is committed but this
// source.
//
//   flood-sender --mode syn|ack|rst --dst A.B.C.D --dport N --rate PPS --seconds S --count N
//                [--src rand|A.B.C.D] [--sports LO-HI] [--seed N] [--dev IFNAME]
//
// syn  SYN with an MSS option (1460), random sequence number
// ack  a bare ACK, random sequence and acknowledgment numbers (no connection has them)
// rst  RST, random sequence number (guessing at the receive window of the 4-tuple)
// --src rand (the default) draws every source address from 198.18.128.0/17 (the upper half of
// the benchmarking range 198.18.0.0/15, RFC 2544); a fixed --src must lie inside
// 198.18.0.0/15, and so must --dst. Source ports: random in --sports (default 1024-65535).
//
// Bounds, all checked before anything is sent: rate <= 2,000,000/s, seconds <= 60, count <=
// 200,000,000; an alarm at seconds + 5 ends the process whatever happens. One raw IPv4 socket
// (IPPROTO_RAW: the header is ours), bound to --dev when given, frames sent in batches of 32
// (sendmmsg), paced against CLOCK_MONOTONIC. At the end it prints one line:
//   FLOOD {"sent":N,"failed":F,"seconds":T,"pps":R,"cpu_s":C}
// (failed: segments the kernel refused at once, ENOBUFS/EAGAIN; they are not retried; cpu_s: the
// process' user + system time, getrusage, which holds the kernel work done in its sendmmsg calls
// where the kernel charges it to the caller).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define MAX_RATE 2000000.0
#define MAX_SECONDS 60.0
#define MAX_COUNT 200000000ULL
#define BENCH_NET 0xc6120000u  /* 198.18.0.0/15 */
#define BENCH_MASK 0xfffe0000u
#define SPOOF_NET 0xc6128000u  /* 198.18.128.0/17 */
#define SPOOF_HOSTS 0x7fffu

static uint64_t rng;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *m) {
  fprintf(stderr, "flood-sender: %s\n", m);
  exit(2);
}

static uint32_t parse_bench_addr(const char *s, const char *what) {
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1) {
    fprintf(stderr, "flood-sender: %s %s is not an IPv4 address\n", what, s);
    exit(2);
  }
  uint32_t h = ntohl(a.s_addr);
  if ((h & BENCH_MASK) != BENCH_NET) {
    fprintf(stderr, "flood-sender: %s %s is outside 198.18.0.0/15; refusing\n", what, s);
    exit(2);
  }
  return h;
}

static uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

static uint32_t sum16(const uint8_t *p, int n) {
  uint32_t s = 0;
  for (int i = 0; i + 1 < n; i += 2) s += (uint32_t)p[i] << 8 | p[i + 1];
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  return s;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v & 0xff;
}
static void put32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

enum { SYN, ACK, RST };

/** One IPv4 + TCP segment into p; returns its length. */
static int build(uint8_t *p, int mode, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  int thl = mode == SYN ? 24 : 20;
  int len = 20 + thl;
  memset(p, 0, len);
  p[0] = 0x45;
  put16(p + 2, len);
  put16(p + 4, rnd() & 0xffff);
  put16(p + 6, 0x4000); /* DF */
  p[8] = 64;
  p[9] = 6; /* TCP */
  put32(p + 12, src);
  put32(p + 16, dst);
  put16(p + 10, fold(sum16(p, 20)));
  uint8_t *t = p + 20;
  put16(t, sport);
  put16(t + 2, dport);
  put32(t + 4, rnd());
  put32(t + 8, mode == ACK ? rnd() : 0);
  t[12] = (thl / 4) << 4;
  t[13] = mode == SYN ? 0x02 : mode == ACK ? 0x10 : 0x04;
  put16(t + 14, mode == RST ? 0 : 64240);
  if (mode == SYN) {
    t[20] = 2; /* MSS */
    t[21] = 4;
    put16(t + 22, 1460);
  }
  uint32_t s = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + thl;
  put16(t + 16, fold(s + sum16(t, thl)));
  return len;
}

int main(int argc, char **argv) {
  const char *mode_s = NULL, *dst_s = NULL, *src_s = "rand", *dev = NULL;
  double rate = 0, seconds = 0;
  unsigned long long count = 0;
  long dport = -1, sport_lo = 1024, sport_hi = 65535;
  unsigned long long seed = 0x9e3779b97f4a7c15ULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) die("every option takes a value");
    const char *v = argv[++i];
    if (!strcmp(a, "--mode")) mode_s = v;
    else if (!strcmp(a, "--dst")) dst_s = v;
    else if (!strcmp(a, "--dport")) dport = strtol(v, NULL, 10);
    else if (!strcmp(a, "--rate")) rate = strtod(v, NULL);
    else if (!strcmp(a, "--seconds")) seconds = strtod(v, NULL);
    else if (!strcmp(a, "--count")) count = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--src")) src_s = v;
    else if (!strcmp(a, "--sports")) {
      if (sscanf(v, "%ld-%ld", &sport_lo, &sport_hi) != 2) die("--sports LO-HI");
    } else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10) | 1;
    else if (!strcmp(a, "--dev")) dev = v;
    else die("unknown option (see the header of bench/_flood-sender.c)");
  }
  if (!mode_s || !dst_s || dport < 1 || dport > 65535) die("--mode, --dst and --dport are required");
  int mode = !strcmp(mode_s, "syn") ? SYN : !strcmp(mode_s, "ack") ? ACK : !strcmp(mode_s, "rst") ? RST : -1;
  if (mode < 0) die("--mode syn|ack|rst");
  if (!(rate > 0 && rate <= MAX_RATE)) die("--rate must be in (0, 2000000]");
  if (!(seconds > 0 && seconds <= MAX_SECONDS)) die("--seconds must be in (0, 60]");
  if (count < 1 || count > MAX_COUNT) die("--count must be in [1, 200000000]");
  if (sport_lo < 1 || sport_hi > 65535 || sport_lo > sport_hi) die("--sports must lie in 1-65535");
  uint32_t dst = parse_bench_addr(dst_s, "--dst");
  int rand_src = !strcmp(src_s, "rand");
  uint32_t src = rand_src ? 0 : parse_bench_addr(src_s, "--src");
  rng = seed;
  alarm((unsigned)seconds + 5); /* the last word: SIGALRM ends the process */

  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    perror("flood-sender: socket(AF_INET, SOCK_RAW, IPPROTO_RAW)");
    return 2;
  }
  if (dev && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, strlen(dev) + 1) < 0) {
    perror("flood-sender: SO_BINDTODEVICE");
    return 2;
  }
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  static uint8_t pkt[BATCH][64];
  struct iovec iov[BATCH];
  struct mmsghdr msg[BATCH];
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(dst)};
  memset(msg, 0, sizeof msg);
  for (int k = 0; k < BATCH; k++) {
    iov[k].iov_base = pkt[k];
    msg[k].msg_hdr.msg_iov = &iov[k];
    msg[k].msg_hdr.msg_iovlen = 1;
    msg[k].msg_hdr.msg_name = &to;
    msg[k].msg_hdr.msg_namelen = sizeof to;
  }
  uint32_t nports = (uint32_t)(sport_hi - sport_lo + 1);

  unsigned long long sent = 0, failed = 0;
  double t0 = now_s(), t = t0;
  while (sent + failed < count && (t = now_s()) - t0 < seconds) {
    double due = (t - t0) * rate;
    long long n = (long long)due - (long long)(sent + failed);
    if (n <= 0) {
      /* ahead of the rate: sleep until about one batch is due */
      double wait = BATCH / rate;
      if (wait > 0.001) wait = 0.001;
      struct timespec ts = {0, (long)(wait * 1e9)};
      nanosleep(&ts, NULL);
      continue;
    }
    if (n > BATCH) n = BATCH;
    if ((unsigned long long)n > count - sent - failed) n = (long long)(count - sent - failed);
    for (int k = 0; k < n; k++) {
      uint32_t s = rand_src ? (SPOOF_NET | (rnd() & SPOOF_HOSTS)) : src;
      uint16_t sp = (uint16_t)(sport_lo + rnd() % nports);
      iov[k].iov_len = build(pkt[k], mode, s, dst, sp, (uint16_t)dport);
    }
    int r = sendmmsg(fd, msg, (unsigned)n, 0);
    if (r < 0) {
      if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
        perror("flood-sender: sendmmsg");
        return 2;
      }
      failed += (unsigned long long)n;
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
      continue;
    }
    sent += (unsigned long long)r;
    if (r < n) failed += (unsigned long long)(n - r);
  }
  double secs = now_s() - t0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  printf("FLOOD {\"sent\":%llu,\"failed\":%llu,\"seconds\":%.4f,\"pps\":%.0f,\"cpu_s\":%.4f}\n", sent, failed, secs,
         sent / secs, cpu);
  close(fd);
  return 0;
}
