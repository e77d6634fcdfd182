/*
 * The write-ahead journal of a pool mapping: the "journal" persistence mode for pools on block
 * devices (docs/persistence.md; file format in docs/pm-format.md).
 *
 * A journal-mode map is MAP_PRIVATE, so stores never reach the pool file by themselves. Every
 * persist is an *entry* appended to a circular journal file, `<pool>.journal`, by a committer
 * thread: all entries queued since its last round (a batch) go out with as few pwritev calls as
 * IOV_MAX allows, then one fdatasync of the journal file makes the whole batch durable. A
 * checkpointer thread later writes the pool pages the durable entries touched from memory into
 * the pool file, fdatasyncs it, and only then records in a header slot of the journal that the
 * ring before position J is free. At open, replay applies every entry after that mark.
 *
 * Threads and shared state. One mutex `mu` guards everything the threads share but a few
 * atomics: `done` and `failed` (so journalDone() is one load), the flag that coalesces
 * onComplete calls, and I/O counters. Four condition variables, one per kind of waiter:
 *   work   the committer, for queued entries (or stopping);
 *   space  the committer, for a checkpoint to free ring space;
 *   ckpt   the checkpointer, for a request (or its 5 s period, or stopping);
 *   js     the JS thread, in journalWait/Sync/Checkpoint/Close and in a submit waiting for
 *          queue room.
 * Neither thread holds `mu` during I/O. The threads read the mapping (payload bytes for
 * pwritev and the CRC, pages for checkpoint pwrites) and never write it; the JS thread writes
 * it. The caller's contract makes that safe: payload ranges do not change until their entry
 * is durable, metadata ranges are copied at submit, and whatever else a checkpoint copies may
 * be newer than durable state, which replay repairs (see checkpoint()). Stores made before a
 * submit are visible to the threads because the submit and the threads take `mu`.
 *
 * Lifetime. An open journal holds strong references to its own handle and to the map handle,
 * so neither finalizer can run while threads use the memory. journalClose, or the environment
 * cleanup hook if the process or worker exits first, drains the queue, stops and joins both
 * threads and drops those references. The struct is freed when both the handle's finalizer and
 * the threadsafe function's finalizer have run (whichever is last; both on the JS thread).
 */
#include "pm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#define RING_OFF 4096u          /* the ring's first byte in the journal file */
#define SLOT 512u               /* a header slot; A at 0, B at 512 */
#define SLOT_CRC 508u           /* where a header slot keeps the CRC of the bytes before */
#define EHDR 48u                /* an entry's fixed header */
#define EPAIR 16u               /* one pair descriptor after it */
#define SECTOR 512u             /* entries start on these boundaries */
#define TAIL_SLOT 64u           /* the log's tail slot (the last pair of a gen != 0 entry) */
#define MAGIC_ENTRY 0x454a4d50u /* "PMJE" read as a little-endian u32 */
#define MAGIC_PAD 0x504a4d50u   /* "PMJP" */
#define F_INPLACE 1u            /* pair flag: its bytes were written in place, not in the entry */
#define MIN_CAP (1u << 20)
#define INLINE_MAX (4u << 20)      /* default inlineMax */
#define QUEUE_BOUND (64ull << 20)  /* queued descriptor + metadata bytes before submit blocks */
#define RUN_MAX (4u << 20)         /* bytes per pwrite of pool pages */
#define PACE (1u << 20)            /* a checkpoint's writeback in steps of this much (write_pages) */
#define PERIOD_S 5                 /* a checkpoint at least this often while the ring is not empty */
#define BITS 64u

static const uint8_t HDR_MAGIC[8] = {'P', 'M', 'J', 'R', 'N', 'L', 0, 0};
static const uint8_t zeros[SECTOR];
static const napi_type_tag JOURNAL_TAG = {0x706d737461636b5fULL, 0x6a6f75726e616c21ULL};

enum { F_POOL = 0, F_JOURNAL = 1 }; /* file numbers in the trace */

/* ---------- CRC-32C (Castagnoli), equal to host/crc32c.ts ---------- */

static uint32_t crc_table[256];
static bool crc_hw; /* SSE4.2's crc32 instruction is there */
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    crc_table[i] = c;
  }
#if defined(__x86_64__)
  unsigned a, b, c, d;
  crc_hw = __get_cpuid(1, &a, &b, &c, &d) && (c >> 20 & 1);
#endif
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n) {
  while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const uint8_t *p, size_t n) {
  for (; n && (uintptr_t)p & 7; n--) c = __builtin_ia32_crc32qi(c, *p++);
  uint64_t w = c;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    w = __builtin_ia32_crc32di(w, v);
  }
  c = (uint32_t)w;
  while (n--) c = __builtin_ia32_crc32qi(c, *p++);
  return c;
}
#endif

/* CRC-32C of p[0, n) following bytes whose CRC-32C is `crc` (0 for none). */
static uint32_t crc32c(uint32_t crc, const void *p, size_t n, bool table_only) {
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (crc_hw && !table_only) return ~crc_sse42(c, p, n);
#endif
  (void)table_only;
  return ~crc_sw(c, p, n);
}

/* ---------- little-endian fields ---------- */

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) {
  return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---------- state ---------- */

/* What a header slot says (besides the constant magic, version, uuid and capacity). */
typedef struct {
  uint64_t ckpt_gen, start, start_seq, last_gen;
  uint64_t slot_off; /* file offset of the saved tail slot; 0: none */
  uint8_t slot[TAIL_SLOT];
} jheader;

/*
 * One submitted entry, in one allocation: this struct, the on-disk header with its pair
 * descriptors (file offset and length filled at submit; pos, len, flags and CRC when
 * written), then the copied metadata bytes.
 */
typedef struct qentry {
  struct qentry *next;
  uint64_t seq, gen;
  uint32_t n, npay; /* pairs; the first npay are payload */
  uint64_t pay;     /* payload bytes: read from the mapping when the entry is written */
  uint64_t meta;    /* metadata bytes: copied at submit to `data` */
  uint8_t *data;
  uint8_t hdr[]; /* EHDR + n * EPAIR bytes */
} qentry;

struct pm_journal {
  /* Set by journalOpen, then read-only. */
  pm_map *m;
  char *path;
  int jfd;   /* the journal file; holds its flock */
  int pfd;   /* the pool file: the map's fd (the map outlives us: map_ref) */
  int trace; /* PMSTACK_JOURNAL_TRACE file, or -1 */
  uint64_t fault_at; /* PMSTACK_JOURNAL_FAULT: the file operation that fails with EIO; 0 none */
  uint64_t cap, inline_max, ckpt_at;
  uint8_t uuid[16];
  bool keep_slot;  /* checkpoints record the tail slot and lastGen (journal-mode maps only) */
  napi_env env;
  napi_threadsafe_function tsfn; /* onComplete, or NULL */

  /* JS thread only. */
  napi_ref self, map_ref; /* strong while open */
  int refs;               /* the handle's finalizer + the tsfn's finalizer still to run */
  bool created, ready, replayed, threads, closed, hook, fail_reported;
  jheader opened; /* the header journalOpen chose, for journalReplay */

  /* Committer only. */
  uint64_t wpos;                  /* ring position of its next entry */
  struct iovec iov[IOV_MAX];      /* a contiguous run of the ring being gathered */
  int niov;
  uint64_t iov_off, iov_len;      /* its file offset and length */
  uint8_t pad[EHDR];              /* a pad entry's header */
  uint64_t *inplace;              /* pages of an in-place batch's payload */

  pthread_mutex_t mu;
  pthread_cond_t work, space, ckpt, js;
  /* Under mu. */
  qentry *qhead, **qtail;
  uint64_t qbytes;
  uint64_t next_seq;                /* the next submit's seq */
  uint64_t start, tail;             /* ring positions: last checkpoint mark, end of durable entries */
  jheader hdr;                      /* the newest header slot on disk */
  uint64_t last_gen;                /* max gen durable */
  uint64_t slot_off;                /* the latest durable gen != 0 entry's tail slot (0: none) */
  uint8_t slot[TAIL_SLOT];
  uint64_t *dirty, *spare;          /* pool pages of durable entries not yet checkpointed */
  bool dirty_any;
  uint64_t ckpt_asked, ckpt_done;   /* checkpoint tickets: requests made, served */
  bool stopping;
  int err;                          /* the first failure's errno; 0 while healthy */
  const char *err_what;
  uint64_t entries, batches, payload_bytes, inplace_bytes, meta_bytes, checkpoints, ckpt_bytes,
      waits_for_space;
  double last_ckpt_ms;

  _Atomic uint64_t done;     /* highest durable seq */
  atomic_bool failed;        /* err != 0 */
  atomic_bool tsfn_pending;  /* an onComplete call is queued and has not read `done` yet */
  _Atomic uint64_t io_ops, pwrites, syncs, pool_syncs;
  pthread_mutex_t trace_mu;  /* one trace record at a time */
  pthread_t committer, checkpointer;
};

/* ---------- file operations (threads): each returns 0 or an errno ---------- */

static int full_write(int fd, const void *p, size_t n) {
  for (size_t done = 0; done < n;) {
    ssize_t w = write(fd, (const uint8_t *)p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    done += (size_t)w;
  }
  return 0;
}

/* Appends one trace record: op, file, then (op 1) the offset, length and bytes to be written. */
static int trace_op(pm_journal *j, int op, int file, uint64_t off, const struct iovec *iov, int n, uint64_t len) {
  uint8_t rec[24] = {(uint8_t)op, (uint8_t)file};
  put64(rec + 8, off);
  put64(rec + 16, len);
  pthread_mutex_lock(&j->trace_mu);
  int e = full_write(j->trace, rec, sizeof rec);
  for (int i = 0; i < n && !e; i++) e = full_write(j->trace, iov[i].iov_base, iov[i].iov_len);
  pthread_mutex_unlock(&j->trace_mu);
  return e;
}

/* Test instrumentation: EIO for the fault_at-th file operation of this journal. */
static int fault(pm_journal *j) {
  return j->fault_at && atomic_fetch_add(&j->io_ops, 1) + 1 == j->fault_at ? EIO : 0;
}

/* Writes iov[0, n) at `off` of a file; iov is consumed (short writes advance it). */
static int file_writev(pm_journal *j, int file, struct iovec *iov, int n, uint64_t off) {
  int fd = file == F_POOL ? j->pfd : j->jfd, e;
  if (j->trace >= 0) {
    uint64_t len = 0;
    for (int i = 0; i < n; i++) len += iov[i].iov_len;
    if ((e = trace_op(j, 1, file, off, iov, n, len))) return e;
  }
  if ((e = fault(j))) return e;
  while (n > 0) {
    ssize_t w = pwritev(fd, iov, n, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    atomic_fetch_add(&j->pwrites, 1);
    off += (uint64_t)w;
    for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--) w -= (ssize_t)iov->iov_len;
    if (n > 0) {
      iov->iov_base = (uint8_t *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return 0;
}

static int file_write(pm_journal *j, int file, const void *p, uint64_t len, uint64_t off) {
  struct iovec v = {(void *)p, len};
  return file_writev(j, file, &v, 1, off);
}

static int file_sync(pm_journal *j, int file) {
  int e = fault(j);
  if (e) return e;
  /* Never retried: after a failed fdatasync the kernel may have dropped the dirty pages. */
  if (fdatasync(file == F_POOL ? j->pfd : j->jfd)) return errno;
  atomic_fetch_add(file == F_POOL ? &j->pool_syncs : &j->syncs, 1);
  return j->trace >= 0 ? trace_op(j, 2, file, 0, NULL, 0, 0) : 0;
}

/* ---------- failure ---------- */

static void notify(pm_journal *j);

/* Records the first failure and wakes every waiter: nothing is made durable from now on. */
static void fail_locked(pm_journal *j, int err, const char *what) {
  if (!j->err) {
    j->err = err;
    j->err_what = what;
    atomic_store(&j->failed, true);
  }
  pthread_cond_broadcast(&j->work);
  pthread_cond_broadcast(&j->space);
  pthread_cond_broadcast(&j->ckpt);
  pthread_cond_broadcast(&j->js);
}

static int fail(pm_journal *j, int err, const char *what) {
  pthread_mutex_lock(&j->mu);
  fail_locked(j, err, what);
  pthread_mutex_unlock(&j->mu);
  notify(j);
  return err;
}

/* The Error of a failed journal (JS thread). */
static napi_value failure_error(napi_env env, pm_journal *j) {
  char msg[PATH_MAX + 256];
  pthread_mutex_lock(&j->mu);
  int e = j->err;
  const char *what = j->err_what;
  pthread_mutex_unlock(&j->mu);
  snprintf(msg, sizeof msg, "pmstack: the journal %s failed: %s: %s (%s): writes are no longer durable", j->path,
           what, plain(e), errname(e));
  return make_error(env, errname(e), msg);
}

static napi_value throw_failed(napi_env env, pm_journal *j) {
  napi_value err = failure_error(env, j);
  if (!err || napi_throw(env, err) != napi_ok) throw_code(env, "EIO", "pmstack: the journal %s failed", j->path);
  return NULL;
}

/* ---------- pool pages ---------- */

static void mark(uint64_t *bits, uint64_t off, uint64_t len) {
  if (!len) return;
  for (uint64_t p = off / PG, last = (off + len - 1) / PG; p <= last; p++) bits[p / BITS] |= 1ull << p % BITS;
}

/*
 * Writes the pool pages set in `bits` from the mapping into the pool file, in ascending runs
 * of at most RUN_MAX bytes, and clears the bits. Adds the bytes written to *bytes. pwrite
 * copies from the mapping inside the kernel, so a page always goes out as memory holds it at
 * that moment, never older than a copy made earlier: the file can only move forward.
 */
static int write_pages(pm_journal *j, uint64_t *bits, uint64_t *bytes, bool pace) {
  const uint64_t pages = j->m->len / PG;
  uint64_t p = 0, chunk = UINT64_MAX; /* the first byte written since the last paced writeback */
  while (p < pages) {
    uint64_t w = bits[p / BITS] >> p % BITS;
    if (!w) { /* nothing at p or above in this word */
      p = (p / BITS + 1) * BITS;
      continue;
    }
    p += (uint64_t)__builtin_ctzll(w);
    uint64_t q = p; /* the run is [p, q) */
    while (q < pages && (bits[q / BITS] >> q % BITS & 1) && (q - p) * PG < RUN_MAX) {
      bits[q / BITS] &= ~(1ull << q % BITS);
      q++;
    }
    int e = file_write(j, F_POOL, j->m->base + j->m->off + p * PG, (q - p) * PG, p * PG);
    if (e) return e;
    *bytes += (q - p) * PG;
    if (chunk == UINT64_MAX) chunk = p * PG;
    p = q;
#ifdef SYNC_FILE_RANGE_WRITE
    /* A checkpoint's writeback goes to the device PACE bytes at a time, each waited for, so the
     * journal's fdatasync (a commit someone waits for) queues behind at most that much rather
     * than behind the whole checkpoint at its final fdatasync. Only a hint: that fdatasync
     * still makes it all durable, and reports any error. */
    if (pace && q * PG - chunk >= PACE) {
      (void)sync_file_range(j->pfd, (off_t)chunk, (off_t)(q * PG - chunk),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      chunk = UINT64_MAX;
    }
#else
    (void)pace;
#endif
  }
  return 0;
}

/* ---------- header slots ---------- */

static void encode_header(const jheader *h, uint64_t cap, const uint8_t *uuid, uint8_t out[SLOT]) {
  memset(out, 0, SLOT);
  memcpy(out, HDR_MAGIC, 8);
  put32(out + 8, 1);
  put32(out + 12, SLOT);
  memcpy(out + 16, uuid, 16);
  put64(out + 32, cap);
  put64(out + 40, h->ckpt_gen);
  put64(out + 48, h->start);
  put64(out + 56, h->start_seq);
  put64(out + 64, h->last_gen);
  put64(out + 72, h->slot_off);
  if (h->slot_off) memcpy(out + 80, h->slot, TAIL_SLOT);
  put32(out + SLOT_CRC, crc32c(0, out, SLOT_CRC, false));
}

/* A header slot's file offset: A for odd checkpoint generations (the fresh file's 1), B for even. */
static uint64_t slot_offset(uint64_t ckpt_gen) { return ckpt_gen % 2 ? 0 : SLOT; }

/* ---------- the committer ---------- */

static uint64_t entry_len(const qentry *e, bool inplace) {
  return EHDR + (uint64_t)e->n * EPAIR + (inplace ? 0 : e->pay) + e->meta;
}

static uint8_t *pair_desc(qentry *e, uint32_t i) { return e->hdr + EHDR + (size_t)i * EPAIR; }

/* Writes the gathered run of the ring. */
static int iov_flush(pm_journal *j) {
  if (!j->niov) return 0;
  int e = file_writev(j, F_JOURNAL, j->iov, j->niov, j->iov_off);
  j->iov_off += j->iov_len;
  j->niov = 0;
  j->iov_len = 0;
  return e;
}

static int iov_add(pm_journal *j, const void *p, uint64_t len) {
  if (!len) return 0;
  if (j->niov == IOV_MAX) {
    int e = iov_flush(j);
    if (e) return e;
  }
  j->iov[j->niov++] = (struct iovec){(void *)p, len};
  j->iov_len += len;
  return 0;
}

/*
 * Makes the entries [from, to) written so far durable (one fdatasync of the journal), then
 * publishes them: their pages marked dirty for the checkpoint and `done` advanced in one
 * critical section, so a checkpoint that takes J = tail has their pages in its bitmap.
 */
static int sync_publish(pm_journal *j, qentry *from, qentry *to) {
  if (from == to) return 0;
  int e = iov_flush(j);
  if (e) return fail(j, e, "writing the journal");
  if ((e = file_sync(j, F_JOURNAL))) return fail(j, e, "fdatasync of the journal");
  pthread_mutex_lock(&j->mu);
  uint64_t last = 0;
  for (qentry *q = from; q != to; q = q->next) {
    bool inplace = false;
    for (uint32_t i = 0; i < q->n; i++) {
      const uint8_t *d = pair_desc(q, i);
      /* in-place bytes are in the pool file already */
      if (get32(d + 12) & F_INPLACE) inplace = true;
      else mark(j->dirty, get64(d), get32(d + 8));
    }
    if (inplace) j->inplace_bytes += q->pay;
    else j->payload_bytes += q->pay;
    j->meta_bytes += q->meta;
    if (q->gen) {
      if (q->gen > j->last_gen) j->last_gen = q->gen;
      j->slot_off = get64(pair_desc(q, q->n - 1));
      memcpy(j->slot, q->data + q->meta - TAIL_SLOT, TAIL_SLOT);
    }
    j->entries++;
    last = q->seq;
  }
  j->batches++;
  j->dirty_any = true;
  j->tail = j->wpos;
  atomic_store(&j->done, last);
  if (j->tail - j->start >= j->ckpt_at && j->ckpt_asked == j->ckpt_done) {
    j->ckpt_asked++;
    pthread_cond_signal(&j->ckpt);
  }
  pthread_cond_broadcast(&j->js);
  pthread_mutex_unlock(&j->mu);
  notify(j);
  return 0;
}

/* Waits until the ring is free up to position `need` (start >= need), asking for checkpoints. */
static int wait_space(pm_journal *j, uint64_t need, uint64_t *start) {
  pthread_mutex_lock(&j->mu);
  j->waits_for_space++;
  while (j->start < need && !j->err) {
    uint64_t ticket = ++j->ckpt_asked;
    pthread_cond_signal(&j->ckpt);
    while (j->ckpt_done < ticket && !j->err) pthread_cond_wait(&j->space, &j->mu);
  }
  *start = j->start;
  int e = j->err;
  pthread_mutex_unlock(&j->mu);
  return e;
}

/* Payload pages of the whole batch into the pool file, durable before any entry names them. */
static int write_inplace(pm_journal *j, qentry *batch) {
  for (qentry *q = batch; q; q = q->next)
    for (uint32_t i = 0; i < q->npay; i++) {
      uint8_t *d = pair_desc(q, i);
      mark(j->inplace, get64(d), get32(d + 8));
      put32(d + 12, F_INPLACE);
    }
  uint64_t bytes = 0;
  int e = write_pages(j, j->inplace, &bytes, false);
  if (e) return fail(j, e, "writing payload in place into the pool file");
  if ((e = file_sync(j, F_POOL))) return fail(j, e, "fdatasync of the pool file");
  return 0;
}

/*
 * Writes one batch. Its payload goes in place when it exceeds inlineMax or when some entry
 * with its payload inline would exceed half the ring (submit guarantees every entry fits in
 * half the ring without its payload: a free ring always has room for it, plus a pad). Entries
 * are gathered into runs of the ring and written when a run ends (IOV_MAX, the physical end,
 * no more space, the batch's end); each time space runs out, what is written is made durable
 * and published first, so the checkpoint the committer waits for can free it.
 */
static void commit_batch(pm_journal *j, qentry *batch) {
  const uint64_t cap = j->cap, max_entry = cap / 2 < UINT32_MAX ? cap / 2 : UINT32_MAX;
  uint64_t pay = 0;
  bool big = false;
  for (qentry *q = batch; q; q = q->next) {
    pay += q->pay;
    big |= entry_len(q, false) > max_entry;
  }
  bool inplace = pay && (pay > j->inline_max || big);
  if (inplace && write_inplace(j, batch)) return;

  pthread_mutex_lock(&j->mu);
  uint64_t start = j->start;
  pthread_mutex_unlock(&j->mu);
  qentry *unsynced = batch;
  for (qentry *q = batch; q; q = q->next) {
    uint64_t len = entry_len(q, inplace), pos = j->wpos, phys = pos % cap;
    uint64_t pad = phys + len > cap ? cap - phys : 0;
    if (pos + pad + len - start > cap) {
      if (sync_publish(j, unsynced, q) || wait_space(j, pos + pad + len - cap, &start)) return;
      unsynced = q;
    }
    if (!j->niov) j->iov_off = RING_OFF + phys;
    int e = 0;
    if (pad) { /* the rest of the lap is a pad entry; this one starts the next lap */
      memset(j->pad, 0, EHDR);
      put32(j->pad, MAGIC_PAD);
      put64(j->pad + 8, pos);
      put64(j->pad + 16, q->seq);
      put32(j->pad + 24, (uint32_t)pad);
      put32(j->pad + 4, crc32c(0, j->pad + 8, EHDR - 8, false));
      if ((e = iov_add(j, j->pad, EHDR)) || (e = iov_flush(j))) {
        fail(j, e, "writing the journal");
        return;
      }
      pos += pad;
      j->iov_off = RING_OFF;
    }
    uint8_t *h = q->hdr;
    put32(h, MAGIC_ENTRY);
    put64(h + 8, pos);
    put64(h + 16, q->seq);
    put32(h + 24, (uint32_t)len);
    put32(h + 28, q->n);
    put64(h + 32, q->gen);
    uint64_t hlen = EHDR + (uint64_t)q->n * EPAIR;
    /* The CRC goes into the header before any part of the entry is queued: the iovec array
     * may be written out (IOV_MAX) in the middle of an entry, header first. */
    uint32_t crc = crc32c(0, h + 8, hlen - 8, false);
    for (uint32_t i = 0; i < q->npay && !inplace; i++) {
      const uint8_t *d = pair_desc(q, i);
      crc = crc32c(crc, j->m->base + j->m->off + get64(d), get32(d + 8), false);
    }
    put32(h + 4, crc32c(crc, q->data, q->meta, false));
    e = iov_add(j, h, hlen);
    for (uint32_t i = 0; i < q->npay && !inplace && !e; i++) {
      const uint8_t *d = pair_desc(q, i);
      e = iov_add(j, j->m->base + j->m->off + get64(d), get32(d + 8));
    }
    if (!e) e = iov_add(j, q->data, q->meta);
    if (!e) e = iov_add(j, zeros, align_up(len, SECTOR) - len); /* the run stays contiguous */
    j->wpos = pos + align_up(len, SECTOR);
    if (!e && j->wpos % cap == 0) e = iov_flush(j); /* the next run starts at the ring's start */
    if (e) {
      fail(j, e, "writing the journal");
      return;
    }
  }
  sync_publish(j, unsynced, NULL);
}

static void free_entries(qentry *q) {
  while (q) {
    qentry *next = q->next;
    free(q);
    q = next;
  }
}

static void *committer_main(void *arg) {
  pm_journal *j = arg;
  pthread_mutex_lock(&j->mu);
  for (;;) {
    while (!j->qhead && !j->stopping && !j->err) pthread_cond_wait(&j->work, &j->mu);
    if (j->err || !j->qhead) break;
    qentry *batch = j->qhead;
    j->qhead = NULL;
    j->qtail = &j->qhead;
    j->qbytes = 0;
    pthread_cond_broadcast(&j->js); /* room in the queue */
    pthread_mutex_unlock(&j->mu);
    commit_batch(j, batch);
    free_entries(batch);
    pthread_mutex_lock(&j->mu);
  }
  /* Failed (or stopping with an empty queue): nothing queued will be written. */
  free_entries(j->qhead);
  j->qhead = NULL;
  j->qtail = &j->qhead;
  j->qbytes = 0;
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

/* ---------- the checkpointer ---------- */

/*
 * One checkpoint; called and returns with mu held; 0, or the errno it failed the journal with.
 * The pages it copies may hold stores newer than J (entries submitted but not durable yet, or
 * not submitted yet): harmless for the bytes the log keeps stable while they matter; for the
 * one range that moves ahead, the log's tail slot, the header records the latest durable slot
 * and the highest durable generation, which replay restores first and reports. A journal on a
 * map in another mode (opened to replay what a journal-mode run left) records neither: that
 * map is MAP_SHARED or written in place by persist, so the file runs ahead of any snapshot
 * anyway, and once the journal is closed a recorded slot would roll back the writes made in
 * place after it.
 */
static int checkpoint(pm_journal *j) {
  jheader h = j->hdr;
  h.ckpt_gen++;
  h.start = j->tail;
  h.start_seq = atomic_load(&j->done) + 1;
  h.last_gen = j->keep_slot ? j->last_gen : 0;
  h.slot_off = j->keep_slot ? j->slot_off : 0;
  memcpy(h.slot, j->slot, TAIL_SLOT);
  bool dirty = j->dirty_any;
  if (!dirty && h.start == j->hdr.start && h.start_seq == j->hdr.start_seq && h.last_gen == j->hdr.last_gen &&
      h.slot_off == j->hdr.slot_off && (!h.slot_off || !memcmp(h.slot, j->hdr.slot, TAIL_SLOT)))
    return 0; /* the newest header already says all this */
  uint64_t *bits = j->dirty;
  j->dirty = j->spare;
  j->spare = NULL;
  j->dirty_any = false;
  pthread_mutex_unlock(&j->mu);

  uint64_t t0 = now_ns(), bytes = 0;
  const char *what = NULL;
  uint8_t buf[SLOT];
  int e = dirty ? write_pages(j, bits, &bytes, true) : 0;
  if (e) what = "writing the pool file";
  else if (bytes && (e = file_sync(j, F_POOL))) what = "fdatasync of the pool file";
  if (!e) {
    encode_header(&h, j->cap, j->uuid, buf);
    if ((e = file_write(j, F_JOURNAL, buf, SLOT, slot_offset(h.ckpt_gen)))) what = "writing the journal header";
    else if ((e = file_sync(j, F_JOURNAL))) what = "fdatasync of the journal header";
  }

  pthread_mutex_lock(&j->mu);
  j->spare = bits; /* all clear again unless it failed, and then it is never used */
  if (e) {
    fail_locked(j, e, what);
    return e;
  }
  j->hdr = h;
  j->start = h.start;
  j->checkpoints++;
  j->ckpt_bytes += bytes;
  j->last_ckpt_ms = (double)(now_ns() - t0) / 1e6;
  return 0;
}

static void *checkpointer_main(void *arg) {
  pm_journal *j = arg;
  struct timespec due;
  bool failed = false;
  clock_gettime(CLOCK_MONOTONIC, &due);
  due.tv_sec += PERIOD_S;
  pthread_mutex_lock(&j->mu);
  for (;;) {
    bool periodic = false;
    while (!j->stopping && !j->err && j->ckpt_asked == j->ckpt_done && !periodic) {
      if (pthread_cond_timedwait(&j->ckpt, &j->mu, &due) != ETIMEDOUT) continue;
      periodic = j->tail != j->start; /* anything durable not yet checkpointed */
      if (!periodic) due.tv_sec += PERIOD_S;
    }
    if (j->stopping || j->err) break;
    uint64_t ticket = j->ckpt_asked; /* this checkpoint starts after every request so far */
    failed = checkpoint(j) != 0;
    j->ckpt_done = ticket;
    clock_gettime(CLOCK_MONOTONIC, &due);
    due.tv_sec += PERIOD_S;
    pthread_cond_broadcast(&j->space);
    pthread_cond_broadcast(&j->js);
  }
  pthread_mutex_unlock(&j->mu);
  if (failed) notify(j); /* onComplete(done, error) */
  return NULL;
}

/* ---------- completion callbacks ---------- */

/* Queues one onComplete call unless one is queued that has not read `done` yet (coalescing). */
static void notify(pm_journal *j) {
  if (j->tsfn && !atomic_exchange(&j->tsfn_pending, true) &&
      napi_call_threadsafe_function(j->tsfn, NULL, napi_tsfn_nonblocking) != napi_ok)
    atomic_store(&j->tsfn_pending, false);
}

/* onComplete(done) on the JS thread; once, after a failure, onComplete(done, error). */
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)data;
  pm_journal *j = context;
  if (!env || !cb) return; /* the function is being torn down */
  /* Cleared before `done` is read: a batch published after the read queues another call. */
  atomic_store(&j->tsfn_pending, false);
  napi_value argv[2], undef;
  size_t argc = 1;
  if (napi_create_double(env, (double)atomic_load(&j->done), &argv[0]) != napi_ok) return;
  if (atomic_load(&j->failed) && !j->fail_reported) {
    if (!(argv[1] = failure_error(env, j))) return;
    j->fail_reported = true;
    argc = 2;
  }
  /* An exception thrown by the callback stays pending: Node reports it as uncaught. */
  if (napi_get_undefined(env, &undef) == napi_ok) napi_call_function(env, undef, cb, argc, argv, NULL);
}

/* ---------- lifetime ---------- */

static void destroy(pm_journal *j) {
  pthread_mutex_destroy(&j->mu);
  pthread_mutex_destroy(&j->trace_mu);
  pthread_cond_destroy(&j->work);
  pthread_cond_destroy(&j->space);
  pthread_cond_destroy(&j->ckpt);
  pthread_cond_destroy(&j->js);
  free(j->dirty);
  free(j->spare);
  free(j->inplace);
  free(j->path);
  free(j);
}

/* The handle's finalizer and the threadsafe function's each hold one reference. */
static void unref_journal(pm_journal *j) {
  if (--j->refs == 0) destroy(j);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  unref_journal(data);
}

/*
 * The handle's finalizer. An open journal pins its handle (j->self), so this only runs once
 * the journal is closed: its threads are joined and nothing else uses the struct but a
 * threadsafe function not finalized yet.
 */
static void journal_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  unref_journal(data);
}

/*
 * Drains the queue (every submitted entry becomes durable, unless the journal fails), runs a
 * final checkpoint if asked, stops and joins the threads, releases the threadsafe function and
 * closes the files (the journal's flock goes with its fd). JS thread; idempotent.
 */
static void shutdown_journal(pm_journal *j, bool final_checkpoint) {
  if (j->closed) return;
  j->closed = true;
  if (j->threads) {
    pthread_mutex_lock(&j->mu);
    while (!j->err && atomic_load(&j->done) + 1 < j->next_seq) pthread_cond_wait(&j->js, &j->mu);
    if (final_checkpoint && !j->err) {
      uint64_t ticket = ++j->ckpt_asked;
      pthread_cond_signal(&j->ckpt);
      while (!j->err && j->ckpt_done < ticket) pthread_cond_wait(&j->js, &j->mu);
    }
    j->stopping = true;
    pthread_cond_broadcast(&j->work);
    pthread_cond_broadcast(&j->ckpt);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->committer, NULL);
    pthread_join(j->checkpointer, NULL);
    j->threads = false;
  }
  if (j->tsfn) napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
  close(j->jfd);
  if (j->trace >= 0) close(j->trace);
  if (j->m->journal == j) j->m->journal = NULL;
}

static void env_cleanup(void *arg);

/* Drops what keeps the handles alive; the cleanup hook too unless it is the caller. */
static void release_refs(pm_journal *j, bool remove_hook) {
  if (j->self) napi_delete_reference(j->env, j->self);
  if (j->map_ref) napi_delete_reference(j->env, j->map_ref);
  j->self = j->map_ref = NULL;
  if (j->hook && remove_hook) napi_remove_env_cleanup_hook(j->env, env_cleanup, j);
  j->hook = false;
}

/*
 * The environment (process or worker) is going away with the journal open. Registered after
 * the threadsafe function was created, so it runs before that function's own cleanup (hooks
 * run newest first), while the committer may still call it.
 */
static void env_cleanup(void *arg) {
  pm_journal *j = arg;
  j->hook = false;
  shutdown_journal(j, false);
  release_refs(j, false);
}

static int start_threads(pm_journal *j) {
  int e = pthread_create(&j->committer, NULL, committer_main, j);
  if (e) return e;
  if ((e = pthread_create(&j->checkpointer, NULL, checkpointer_main, j))) {
    pthread_mutex_lock(&j->mu);
    j->stopping = true;
    pthread_cond_broadcast(&j->work);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->committer, NULL);
    return e;
  }
  j->threads = j->ready = true;
  return 0;
}

/* ---------- handles and arguments ---------- */

/* The handle's journal (open or closed), or NULL with a TypeError. */
static pm_journal *journal_of(napi_env env, napi_value v) {
  bool ok = false, pending = false;
  void *p = NULL;
  napi_value exc;
  if (napi_check_object_type_tag(env, v, &JOURNAL_TAG, &ok) == napi_ok && ok &&
      napi_get_value_external(env, v, &p) == napi_ok && p)
    return p;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &exc);
  return throw_type(env, "pmstack: %s must be a handle returned by journalOpen()", "journal"), NULL;
}

/* An open journal, or NULL with an exception (TypeError, EBADF when closed). */
static pm_journal *get_journal(napi_env env, napi_value v) {
  pm_journal *j = journal_of(env, v);
  if (j && j->closed) return throw_code(env, "EBADF", "pmstack: cannot use journal %s: it is closed", j->path), NULL;
  return j;
}

/* An open, replayed, healthy journal, or NULL with an exception. */
static pm_journal *usable(napi_env env, pm_journal *j) {
  if (!j->ready)
    return throw_code(env, "EINVAL", "pmstack: journal %s: call journalReplay first (it was opened, not created)",
                      j->path), NULL;
  if (atomic_load(&j->failed)) return throw_failed(env, j), NULL;
  return j;
}

/* opts[name]: 1 and *v when present and not undefined, 0 when absent, -1 thrown. */
static int opt(napi_env env, napi_value opts, const char *name, napi_value *v) {
  bool has = false;
  napi_valuetype t;
  CHECK_I(napi_has_named_property(env, opts, name, &has));
  if (!has) return 0;
  CHECK_I(napi_get_named_property(env, opts, name, v));
  CHECK_I(napi_typeof(env, *v, &t));
  return t != napi_undefined;
}

static int arg_bool(napi_env env, napi_value v, const char *what, bool *out) {
  napi_status s = napi_get_value_bool(env, v, out);
  if (s == napi_boolean_expected) return throw_type(env, "pmstack: %s must be a boolean", what), -1;
  CHECK_I(s);
  return 0;
}

/* ---------- opening ---------- */

static int pwrite_full(int fd, const uint8_t *p, uint64_t n, uint64_t off) {
  for (uint64_t done = 0; done < n;) {
    ssize_t w = pwrite(fd, p + done, n - done, (off_t)(off + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    done += (uint64_t)w;
  }
  return 0;
}

/*
 * Creates the journal file atomically, as pm_create does a pool: the whole file (header slot A,
 * zeros, a zeroed ring: written, so no unwritten extent is left for a later fdatasync to
 * convert, which would make it commit file system metadata) under <path>.tmp.<pid>, fsynced,
 * linked to <path> (EEXIST if anything is there), the temporary name removed, the directory
 * fsynced. Returns the fd, which holds the flock, or -1 thrown; on failure nothing is left.
 */
static int create_file(napi_env env, const char *path, uint64_t cap, const uint8_t *uuid, jheader *h) {
  enum { CHUNK = 1 << 20 };
  char tmp[PATH_MAX + 32];
  struct stat st;
  if (lstat(path, &st) == 0) return throw_sys(env, EEXIST, "create journal", path, NULL), -1;
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
    return throw_sys(env, ENAMETOOLONG, "create journal", path, NULL), -1;
  uint8_t *buf = calloc(1, CHUNK);
  if (!buf) return throw_sys(env, ENOMEM, "create journal", path, NULL), -1;
  /* owner-only (0600), as the pool: the journal holds copies of stored values */
  int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    free(buf);
    if (e == EEXIST)
      return throw_code(env, "EEXIST", "pmstack: cannot create journal %s: a stale temporary file %s exists; "
                        "remove it", path, tmp), -1;
    return throw_sys(env, e, "create journal", path, "making the temporary file: "), -1;
  }
  *h = (jheader){.ckpt_gen = 1, .start_seq = 1};
  encode_header(h, cap, uuid, buf);
  int e = 0;
  bool linked = false;
  const char *step = "";
  if (flock(fd, LOCK_EX | LOCK_NB)) { e = errno; step = "locking the temporary file: "; goto fail; }
  if ((e = pwrite_full(fd, buf, RING_OFF, 0))) { step = "writing it: "; goto fail; }
  memset(buf, 0, SLOT);
  for (uint64_t off = RING_OFF; off < RING_OFF + cap; off += CHUNK)
    if ((e = pwrite_full(fd, buf, RING_OFF + cap - off < CHUNK ? RING_OFF + cap - off : CHUNK, off))) {
      step = "writing it: ";
      goto fail;
    }
  if (fsync(fd)) { e = errno; step = "fsync: "; goto fail; }
  if (link(tmp, path)) { e = errno; step = e == EEXIST ? "" : "linking the temporary file: "; goto fail; }
  linked = true;
  if (unlink(tmp)) { e = errno; step = "removing the temporary file: "; goto fail; }
  if ((e = fsync_dir(path))) { step = "fsync of its directory: "; goto fail; }
  free(buf);
  return fd;
fail:
  free(buf);
  if (linked) unlink(path);
  unlink(tmp);
  close(fd);
  return throw_sys(env, e, "create journal", path, step), -1;
}

/*
 * Opens and locks an existing journal and picks its newer valid header slot (magic, version,
 * slot size, CRC and this pool's uuid). Reads only: a refused file is closed unchanged.
 * Returns the fd, or -1 thrown.
 */
static int open_file(napi_env env, const char *path, pm_map *m, const uint8_t *uuid, jheader *out, uint64_t *cap) {
  struct stat st;
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK); /* a FIFO cannot hang us */
  if (fd < 0) return throw_sys(env, errno, "open journal", path, NULL), -1;
  int e = fstat(fd, &st) ? errno : 0;
  if (e || !S_ISREG(st.st_mode)) {
    close(fd);
    if (e) return throw_sys(env, e, "open journal", path, "fstat: "), -1;
    return throw_code(env, "EINVAL", "pmstack: cannot open journal %s: it is not a regular file", path), -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  if (flock(fd, LOCK_EX | LOCK_NB)) {
    e = errno;
    close(fd);
    return throw_sys(env, e, "lock journal", path, NULL), -1;
  }
  uint8_t buf[2 * SLOT];
  uint64_t got = 0;
  while (got < sizeof buf) {
    ssize_t n = pread(fd, buf + got, sizeof buf - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      e = errno;
      close(fd);
      return throw_sys(env, e, "read journal", path, NULL), -1;
    }
    if (n == 0) break;
    got += (uint64_t)n;
  }
  jheader hs[2];
  uint64_t caps[2];
  int best = -1;
  bool foreign = false;
  for (int i = 0; i < 2; i++) {
    const uint8_t *s = buf + i * SLOT;
    if (got < (uint64_t)(i + 1) * SLOT || memcmp(s, HDR_MAGIC, 8) || get32(s + 8) != 1 || get32(s + 12) != SLOT ||
        get32(s + SLOT_CRC) != crc32c(0, s, SLOT_CRC, false))
      continue;
    if (memcmp(s + 16, uuid, 16)) {
      foreign = true;
      continue;
    }
    caps[i] = get64(s + 32);
    hs[i] = (jheader){.ckpt_gen = get64(s + 40), .start = get64(s + 48), .start_seq = get64(s + 56),
                      .last_gen = get64(s + 64), .slot_off = get64(s + 72)};
    memcpy(hs[i].slot, s + 80, TAIL_SLOT);
    if (best < 0 || hs[i].ckpt_gen > hs[best].ckpt_gen) best = i;
  }
  char why[192] = "";
  if (best < 0 && foreign) {
    close(fd);
    return throw_code(env, "EUUID", "pmstack: journal %s belongs to another pool", path), -1;
  }
  if (best < 0) {
    snprintf(why, sizeof why, "neither header slot is valid");
  } else {
    const jheader *h = &hs[best];
    uint64_t c = caps[best];
    if (c % PG || c < MIN_CAP || c > (uint64_t)MAX_SAFE - RING_OFF)
      snprintf(why, sizeof why, "impossible ring capacity %llu", (unsigned long long)c);
    else if ((uint64_t)st.st_size != RING_OFF + c)
      snprintf(why, sizeof why, "the file is %llu bytes, its header says %llu", (unsigned long long)st.st_size,
               (unsigned long long)(RING_OFF + c));
    else if (h->start % SECTOR || h->start > (uint64_t)MAX_SAFE / 2 || h->start_seq == 0 ||
             h->start_seq > (uint64_t)MAX_SAFE / 2)
      snprintf(why, sizeof why, "impossible start position %llu or sequence number %llu",
               (unsigned long long)h->start, (unsigned long long)h->start_seq);
    else if (h->slot_off && (h->slot_off > m->len || m->len - h->slot_off < TAIL_SLOT))
      snprintf(why, sizeof why, "its saved tail slot at %llu is outside the pool (%llu bytes)",
               (unsigned long long)h->slot_off, (unsigned long long)m->len);
    *out = *h;
    *cap = c;
  }
  if (*why) {
    close(fd);
    return throw_code(env, "EBADJOURNAL", "pmstack: cannot open journal %s: %s", path, why), -1;
  }
  return fd;
}

/**
 * journalOpen(map, path, {create, bytes?, uuid, inlineMax?, checkpointAt?, onComplete?}) -> handle
 * Creates (exclusively) or opens the journal of a mapping. A created journal is ready for
 * submits; an opened one must be replayed first (journalReplay).
 */
napi_value journal_open(napi_env env, napi_callback_info info) {
  napi_value argv[3], v, handle, name, cb = NULL;
  napi_valuetype t;
  char path[PATH_MAX];
  pm_map *m;
  bool create = false;
  uint8_t *uuid;
  size_t ulen;
  uint64_t bytes = 0, inline_max = INLINE_MAX, ckpt_at = 0, fault_at = 0;
  int r;
  if (get_args(env, info, 3, argv, "journalOpen") || !(m = get_map(env, argv[0])) || arg_path(env, argv[1], path))
    return NULL;
  CHECK(napi_typeof(env, argv[2], &t));
  if (t != napi_object) return throw_type(env, "pmstack: %s must be an object", "opts");
  if ((r = opt(env, argv[2], "create", &v)) < 0) return NULL;
  if (!r) return throw_type(env, "pmstack: %s must be a boolean", "opts.create");
  if (arg_bool(env, v, "opts.create", &create)) return NULL;
  if ((r = opt(env, argv[2], "uuid", &v)) < 0) return NULL;
  if (!r) return throw_type(env, "pmstack: %s must be a Uint8Array", "opts.uuid");
  if (arg_u8(env, v, "opts.uuid", &uuid, &ulen, NULL)) return NULL;
  if (ulen != 16) return throw_code(env, "EINVAL", "pmstack: opts.uuid must be 16 bytes, got %zu", ulen);
  if ((r = opt(env, argv[2], "bytes", &v)) < 0 || (r && arg_u64(env, v, "opts.bytes", &bytes))) return NULL;
  if ((r = opt(env, argv[2], "inlineMax", &v)) < 0 || (r && arg_u64(env, v, "opts.inlineMax", &inline_max)))
    return NULL;
  if ((r = opt(env, argv[2], "checkpointAt", &v)) < 0 || (r && arg_u64(env, v, "opts.checkpointAt", &ckpt_at)))
    return NULL;
  if (r && ckpt_at == 0) return throw_code(env, "EINVAL", "pmstack: opts.checkpointAt must be positive");
  if ((r = opt(env, argv[2], "onComplete", &v)) < 0) return NULL;
  if (r) {
    CHECK(napi_typeof(env, v, &t));
    if (t != napi_function && t != napi_null)
      return throw_type(env, "pmstack: %s must be a function", "opts.onComplete");
    if (t == napi_function) cb = v;
  }
  if (create && (bytes % PG || bytes < MIN_CAP || bytes > (uint64_t)MAX_SAFE - RING_OFF))
    return throw_code(env, "EINVAL", "pmstack: cannot create journal %s: bytes must be a multiple of %u and at "
                      "least %u, got %llu", path, PG, MIN_CAP, (unsigned long long)bytes);
  if (m->journal)
    return throw_code(env, "EBUSY", "pmstack: cannot open journal %s: %s has a journal open", path, m->path);
  /* Test instrumentation, read here so a bad value changes nothing on disk. */
  const char *fault_s = getenv("PMSTACK_JOURNAL_FAULT"), *trace_s = getenv("PMSTACK_JOURNAL_TRACE");
  if (fault_s && *fault_s) {
    char *end;
    errno = 0;
    unsigned long long f = strtoull(fault_s, &end, 10);
    if (errno || *end || f == 0)
      return throw_code(env, "EINVAL", "pmstack: PMSTACK_JOURNAL_FAULT must be a positive integer, got '%s'", fault_s);
    fault_at = f;
  }
  int trace = -1;
  if (trace_s && *trace_s && (trace = open(trace_s, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
    return throw_sys(env, errno, "open the journal trace", trace_s, NULL);
  pthread_once(&crc_once, crc_init);

  jheader h;
  uint64_t cap = bytes;
  int jfd = create ? create_file(env, path, cap, uuid, &h) : open_file(env, path, m, uuid, &h, &cap);
  pm_journal *j = jfd < 0 ? NULL : calloc(1, sizeof *j);
  size_t words = (m->len / PG + BITS - 1) / BITS;
  pthread_condattr_t ca;
  if (j) {
    j->path = strdup(path);
    j->dirty = calloc(words, 8);
    j->spare = calloc(words, 8);
    j->inplace = calloc(words, 8);
  }
  if (!j || !j->path || !j->dirty || !j->spare || !j->inplace || pthread_condattr_init(&ca)) {
    if (j) {
      free(j->path);
      free(j->dirty);
      free(j->spare);
      free(j->inplace);
      free(j);
    }
    if (jfd >= 0) close(jfd);
    if (trace >= 0) close(trace);
    return jfd < 0 ? NULL : throw_sys(env, ENOMEM, "open journal", path, NULL);
  }
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the checkpointer's period */
  pthread_mutex_init(&j->mu, NULL);
  pthread_mutex_init(&j->trace_mu, NULL);
  pthread_cond_init(&j->work, NULL);
  pthread_cond_init(&j->space, NULL);
  pthread_cond_init(&j->ckpt, &ca);
  pthread_cond_init(&j->js, NULL);
  pthread_condattr_destroy(&ca);
  j->m = m;
  j->jfd = jfd;
  j->pfd = m->fd;
  j->trace = trace;
  j->fault_at = fault_at;
  j->cap = cap;
  j->inline_max = inline_max;
  j->ckpt_at = ckpt_at ? ckpt_at : cap / 4;
  memcpy(j->uuid, uuid, 16);
  j->keep_slot = m->mode == M_JOURNAL;
  j->env = env;
  j->created = create;
  j->opened = j->hdr = h;
  j->qtail = &j->qhead;
  j->next_seq = h.start_seq;
  j->start = j->tail = j->wpos = h.start;
  atomic_init(&j->done, h.start_seq - 1);
  j->refs = 1;
  if (napi_create_external(env, j, journal_finalize, NULL, &handle) != napi_ok) {
    throw_napi(env, "napi_create_external");
    shutdown_journal(j, false); /* closes the files */
    destroy(j);
    return NULL;
  }
  /* From here the finalizer owns j; a failure closes the journal and leaves it to it. */
  int e = 0;
  if (napi_type_tag_object(env, handle, &JOURNAL_TAG) != napi_ok) goto napi_fail;
  if (cb) {
    if (napi_create_string_utf8(env, "pmstack journal", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_threadsafe_function(env, cb, NULL, name, 0, 1, j, tsfn_finalize, j, call_js, &j->tsfn) != napi_ok)
      goto napi_fail;
    j->refs++;
    /* Completions never keep the process alive by themselves. */
    if (napi_unref_threadsafe_function(env, j->tsfn) != napi_ok) goto napi_fail;
  }
  if (napi_create_reference(env, handle, 1, &j->self) != napi_ok ||
      napi_create_reference(env, argv[0], 1, &j->map_ref) != napi_ok ||
      napi_add_env_cleanup_hook(env, env_cleanup, j) != napi_ok)
    goto napi_fail;
  j->hook = true;
  m->journal = j;
  if (create && (e = start_threads(j))) {
    shutdown_journal(j, false);
    release_refs(j, true);
    return throw_sys(env, e, "open journal", path, "starting its threads: ");
  }
  return handle;
napi_fail:
  throw_napi(env, "journalOpen");
  shutdown_journal(j, false);
  release_refs(j, true);
  return NULL;
}

/* ---------- replay ---------- */

typedef struct {
  uint64_t entries, bytes, discarded;
  const char *damage;
} replay_t;

static int pread_full(int fd, uint8_t *p, uint64_t n, uint64_t off) {
  for (uint64_t done = 0; done < n;) {
    ssize_t r = pread(fd, p + done, n - done, (off_t)(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? errno : EIO;
    done += (uint64_t)r;
  }
  return 0;
}

/*
 * Applies the entries after the chosen header's start mark to the mapping, in order, and
 * marks what they touch dirty. No thread runs yet. An entry is valid when it sits where the
 * scan expects it (its pos), has the expected seq, consistent lengths, its CRC and ranges
 * inside the pool; the first one that is not ends the scan (see docs/pm-format.md for the
 * damage reasons). An in-place pair re-reads its bytes from the pool file at its turn: an
 * earlier inline entry for the same bytes must not win over it. Returns 0 or -1 thrown.
 */
static int scan(napi_env env, pm_journal *j, replay_t *r) {
  const uint64_t cap = j->cap;
  const jheader *h = &j->opened;
  pm_map *m = j->m;
  uint8_t *mem = m->base + m->off;
  uint8_t *file = mmap(NULL, RING_OFF + cap, PROT_READ, MAP_SHARED, j->jfd, 0);
  if (file == MAP_FAILED) return throw_sys(env, errno, "read journal", j->path, NULL), -1;
  const uint8_t *ring = file + RING_OFF;
  j->last_gen = h->last_gen;
  if (h->slot_off) { /* first: the entries below may move the slot on */
    memcpy(mem + h->slot_off, h->slot, TAIL_SLOT);
    mark(j->dirty, h->slot_off, TAIL_SLOT);
    j->slot_off = h->slot_off;
    memcpy(j->slot, h->slot, TAIL_SLOT);
  }
  uint64_t pos = h->start, seq = h->start_seq;
  const char *damage = "";
  for (;;) {
    const uint64_t phys = pos % cap;
    const uint8_t *e = ring + phys;
    const uint32_t magic = get32(e), len = get32(e + 24), n = get32(e + 28);
    const uint64_t epos = get64(e + 8), gen = get64(e + 32);
    const bool known = magic == MAGIC_ENTRY || magic == MAGIC_PAD;
    if (epos != pos) {
      /* Zeros, old data or an entry of an earlier lap: the normal end. A header of a later
       * lap cannot be there. */
      if (known && epos > pos && epos % cap == phys) damage = "position";
      break;
    }
    if (!known) { damage = "magic"; break; }
    if (get64(e + 16) != seq) { damage = "sequence"; break; }
    if (magic == MAGIC_PAD) {
      if (len != cap - phys) { damage = "length"; break; }
      if (get32(e + 4) != crc32c(0, e + 8, EHDR - 8, false)) { damage = "crc"; break; }
      pos += len;
      continue;
    }
    const uint64_t hlen = EHDR + (uint64_t)n * EPAIR;
    uint64_t data = 0;
    bool ok = len >= EHDR && hlen <= len && phys + len <= cap;
    for (uint32_t i = 0; ok && i < n; i++) {
      const uint8_t *d = e + EHDR + (size_t)i * EPAIR;
      uint32_t fl = get32(d + 12);
      if (!(fl & F_INPLACE)) data += get32(d + 8);
      ok = !(fl & ~F_INPLACE) && data <= len; /* no unknown flag; no overflow of the sum */
    }
    /* A gen != 0 entry ends with the tail slot's 64 bytes. */
    if (ok && gen)
      ok = n && get32(e + hlen - EPAIR + 8) == TAIL_SLOT && !(get32(e + hlen - EPAIR + 12) & F_INPLACE);
    if (!ok || hlen + data != len) { damage = "length"; break; }
    if (get32(e + 4) != crc32c(0, e + 8, len - 8, false)) { damage = "crc"; break; }
    for (uint32_t i = 0; ok && i < n; i++) {
      const uint8_t *d = e + EHDR + (size_t)i * EPAIR;
      uint64_t off = get64(d), l = get32(d + 8);
      ok = off <= m->len && l <= m->len - off;
    }
    if (!ok) { damage = "range"; break; }
    const uint8_t *src = e + hlen;
    for (uint32_t i = 0; i < n; i++) {
      const uint8_t *d = e + EHDR + (size_t)i * EPAIR;
      uint64_t off = get64(d), l = get32(d + 8);
      if (get32(d + 12) & F_INPLACE) {
        int err = pread_full(j->pfd, mem + off, l, off);
        if (err) {
          munmap(file, RING_OFF + cap);
          return throw_sys(env, err, "replay into", m->path, "reading payload written in place: "), -1;
        }
      } else {
        memcpy(mem + off, src, l);
        src += l;
        mark(j->dirty, off, l);
      }
    }
    if (gen) {
      if (gen > j->last_gen) j->last_gen = gen;
      j->slot_off = get64(e + hlen - EPAIR);
      memcpy(j->slot, src - TAIL_SLOT, TAIL_SLOT);
    }
    r->entries++;
    pos += align_up(len, SECTOR);
    seq++;
  }
  r->bytes = pos - h->start;
  r->damage = damage;
  /* What was thrown away: the chain of headers that claim the next positions. */
  for (uint64_t p = pos; *damage && r->discarded < cap;) {
    const uint8_t *e = ring + p % cap;
    uint32_t len = get32(e + 24);
    if (get64(e + 8) != p || len < EHDR || len > cap - p % cap) break;
    uint64_t step = get32(e) == MAGIC_PAD ? len : align_up(len, SECTOR);
    r->discarded += step;
    p += step;
  }
  munmap(file, RING_OFF + cap);
  /*
   * The ring continues one lap after the start mark, with nothing in between: every entry an
   * earlier run wrote lies below start + capacity (it had to fit in the ring then), so no
   * position this run writes can hold a stale entry that replay would take for the expected
   * one, whatever damage ended this scan. Until a checkpoint records the new start, the ring
   * counts as full, so nothing is written before the replayed pages are in the pool file.
   */
  j->tail = j->wpos = h->start + cap;
  j->next_seq = seq;
  atomic_store(&j->done, seq - 1);
  j->dirty_any = true;
  return 0;
}

/**
 * journalReplay(j) -> {entries, bytes, startSeq, nextSeq, lastGen, damage, discardedBytes}
 * Once, right after journalOpen and before any submit. For an opened journal: restores the
 * saved tail slot and applies every valid entry after the start mark into the mapping, then
 * starts the journal's threads. A created journal has nothing to replay.
 */
napi_value journal_replay(napi_env env, napi_callback_info info) {
  napi_value argv[1], o, v;
  pm_journal *j;
  if (get_args(env, info, 1, argv, "journalReplay") || !(j = get_journal(env, argv[0]))) return NULL;
  if (j->replayed)
    return throw_code(env, "EINVAL", "pmstack: journal %s: journalReplay runs once, before any submit", j->path);
  j->replayed = true;
  replay_t r = {.damage = ""};
  if (!j->created) {
    if (scan(env, j, &r)) return NULL;
    int e = start_threads(j);
    if (e) return throw_sys(env, e, "open journal", j->path, "starting its threads: ");
  }
  const struct { const char *name; double value; } nums[] = {
      {"entries", (double)r.entries},
      {"bytes", (double)r.bytes},
      {"startSeq", (double)j->opened.start_seq},
      {"nextSeq", (double)j->next_seq},
      {"lastGen", (double)j->last_gen},
      {"discardedBytes", (double)r.discarded},
  };
  CHECK(napi_create_object(env, &o));
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    CHECK(napi_create_double(env, nums[i].value, &v));
    CHECK(napi_set_named_property(env, o, nums[i].name, v));
  }
  CHECK(napi_create_string_utf8(env, r.damage, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, o, "damage", v));
  return o;
}

/* ---------- submitting ---------- */

/*
 * An entry of n ranges (memory offsets, inside the mapping), the first npay payload: their
 * descriptors, and the metadata ranges' bytes copied now. NULL with an exception (E2BIG when
 * even without its payload it would take more than half the ring).
 */
static qentry *entry_new(napi_env env, pm_journal *j, const range_t *r, uint32_t n, uint32_t npay, uint64_t gen) {
  pm_map *m = j->m;
  uint64_t pay = 0, meta = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (i < npay) pay += r[i].b - r[i].a;
    else meta += r[i].b - r[i].a;
  }
  const uint64_t hlen = EHDR + (uint64_t)n * EPAIR, max = j->cap / 2 < UINT32_MAX ? j->cap / 2 : UINT32_MAX;
  if (hlen + meta > max)
    return throw_code(env, "E2BIG", "pmstack: cannot journal %u ranges with %llu bytes of metadata in %s: an "
                      "entry holds at most %llu bytes (half the ring)", n, (unsigned long long)meta, j->path,
                      (unsigned long long)max), NULL;
  qentry *e = malloc(sizeof *e + hlen + meta);
  if (!e) return throw_sys(env, ENOMEM, "journal into", j->path, NULL), NULL;
  *e = (qentry){.gen = gen, .n = n, .npay = npay, .pay = pay, .meta = meta, .data = e->hdr + hlen};
  memset(e->hdr, 0, hlen);
  uint8_t *dst = e->data;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t len = r[i].b - r[i].a;
    put64(pair_desc(e, i), r[i].a - m->off);
    put32(pair_desc(e, i) + 8, (uint32_t)len);
    if (i >= npay) {
      memcpy(dst, m->base + r[i].a, len);
      dst += len;
    }
  }
  return e;
}

/* Queues e (taking it) and returns its seq; 0 with an exception if the journal failed. */
static uint64_t enqueue(napi_env env, pm_journal *j, qentry *e) {
  const uint64_t size = (uint64_t)e->n * EPAIR + e->meta;
  j->replayed = true; /* a replay now would overwrite what this entry says */
  pthread_mutex_lock(&j->mu);
  while (!j->err && j->qbytes && j->qbytes + size > QUEUE_BOUND) pthread_cond_wait(&j->js, &j->mu);
  if (j->err) {
    pthread_mutex_unlock(&j->mu);
    free(e);
    return throw_failed(env, j), 0;
  }
  uint64_t seq = e->seq = j->next_seq++;
  e->next = NULL;
  *j->qtail = e;
  j->qtail = &e->next;
  j->qbytes += size;
  pthread_cond_signal(&j->work);
  pthread_mutex_unlock(&j->mu);
  return seq;
}

/* Blocks until entry `seq` (and every one before it) is durable. 0, or -1 thrown. */
static int wait_done(napi_env env, pm_journal *j, uint64_t seq) {
  pthread_mutex_lock(&j->mu);
  while (!j->err && atomic_load(&j->done) < seq) pthread_cond_wait(&j->js, &j->mu);
  int e = j->err;
  pthread_mutex_unlock(&j->mu);
  return e ? (throw_failed(env, j), -1) : 0;
}

int journal_persist(napi_env env, pm_map *m, const range_t *r, uint64_t n) {
  pm_journal *j = usable(env, m->journal);
  qentry *e = j ? entry_new(env, j, r, (uint32_t)n, (uint32_t)n, 0) : NULL;
  uint64_t seq = e ? enqueue(env, j, e) : 0;
  return seq ? wait_done(env, j, seq) : -1;
}

static napi_value submit(napi_env env, napi_callback_info info, const char *fn, bool sync) {
  enum { STACK_PAIRS = 64 };
  napi_value argv[5], out;
  pm_journal *j;
  uint64_t toff, count, npay, gen;
  if (get_args(env, info, 5, argv, fn) || !(j = get_journal(env, argv[0])) || !usable(env, j) ||
      arg_u64(env, argv[1], "tableMemOffset", &toff) || arg_u64(env, argv[2], "count", &count) ||
      arg_u64(env, argv[3], "payloadCount", &npay) || arg_u64(env, argv[4], "gen", &gen))
    return NULL;
  pm_map *m = j->m;
  if (count > UINT32_MAX || npay > count)
    return throw_code(env, "EINVAL", "pmstack: %s: payloadCount %llu and count %llu must satisfy payloadCount <= "
                      "count < 2^32", fn, (unsigned long long)npay, (unsigned long long)count);
  if (toff > m->mem_size || count * 8 > m->mem_size - toff)
    return throw_code(env, "EINVAL", "pmstack: %s: table [%llu, %llu) is outside the memory (%llu bytes)", fn,
                      (unsigned long long)toff, (unsigned long long)(toff + count * 8),
                      (unsigned long long)m->mem_size);
  range_t stack[STACK_PAIRS], *r = count > STACK_PAIRS ? malloc(count * sizeof *r) : stack;
  if (!r) return throw_sys(env, ENOMEM, "journal into", j->path, NULL);
  const uint8_t *src = m->base + toff; /* the same u32 pairs persistRanges reads */
  for (uint64_t i = 0; i < count; i++, src += 8) {
    uint64_t off = get32(src), len = get32(src + 4);
    if (!inside(m, off, len)) {
      if (r != stack) free(r);
      return throw_code(env, "EINVAL", "pmstack: %s: range [%llu, %llu) is outside the mapping of %s [%llu, %llu)",
                        fn, (unsigned long long)off, (unsigned long long)(off + len), m->path,
                        (unsigned long long)m->off, (unsigned long long)(m->off + m->len));
    }
    r[i] = (range_t){off, off + len};
  }
  qentry *e = NULL;
  if (gen && (npay == count || r[count - 1].b - r[count - 1].a != TAIL_SLOT))
    throw_code(env, "EINVAL", "pmstack: %s: gen %llu needs the tail slot (%u bytes of metadata) as the last pair",
               fn, (unsigned long long)gen, TAIL_SLOT);
  else
    e = entry_new(env, j, r, (uint32_t)count, (uint32_t)npay, gen);
  if (r != stack) free(r);
  uint64_t seq = e ? enqueue(env, j, e) : 0;
  if (!seq || (sync && wait_done(env, j, seq))) return NULL;
  CHECK(napi_create_double(env, (double)seq, &out));
  return out;
}

/** journalSubmit(j, tableMemOffset, count, payloadCount, gen) -> seq: queues one entry. */
napi_value journal_submit(napi_env env, napi_callback_info info) {
  return submit(env, info, "journalSubmit", false);
}

/** journalSync(j, tableMemOffset, count, payloadCount, gen) -> seq: submits and waits for it. */
napi_value journal_sync(napi_env env, napi_callback_info info) { return submit(env, info, "journalSync", true); }

/** journalWait(j, seq): blocks until entry seq and every one before it are durable. */
napi_value journal_wait(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  pm_journal *j;
  uint64_t seq;
  if (get_args(env, info, 2, argv, "journalWait") || !(j = get_journal(env, argv[0])) || !usable(env, j) ||
      arg_u64(env, argv[1], "seq", &seq))
    return NULL;
  pthread_mutex_lock(&j->mu);
  uint64_t next = j->next_seq;
  pthread_mutex_unlock(&j->mu);
  if (seq >= next)
    return throw_code(env, "EINVAL", "pmstack: journalWait(%s): seq %llu was not submitted (the last is %llu)",
                      j->path, (unsigned long long)seq, (unsigned long long)(next - 1));
  wait_done(env, j, seq);
  return NULL;
}

/** journalDone(j) -> the highest durable seq (one atomic load); throws once the journal failed. */
napi_value journal_done(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  pm_journal *j;
  if (get_args(env, info, 1, argv, "journalDone") || !(j = get_journal(env, argv[0]))) return NULL;
  if (atomic_load(&j->failed)) return throw_failed(env, j);
  CHECK(napi_create_double(env, (double)atomic_load(&j->done), &out));
  return out;
}

/** journalCheckpoint(j, wait): asks for a checkpoint; with wait, returns once one that started
 *  after the call has completed. */
napi_value journal_checkpoint(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  pm_journal *j;
  bool wait;
  if (get_args(env, info, 2, argv, "journalCheckpoint") || !(j = get_journal(env, argv[0])) || !usable(env, j) ||
      arg_bool(env, argv[1], "wait", &wait))
    return NULL;
  pthread_mutex_lock(&j->mu);
  uint64_t ticket = ++j->ckpt_asked;
  pthread_cond_signal(&j->ckpt);
  while (wait && !j->err && j->ckpt_done < ticket) pthread_cond_wait(&j->js, &j->mu);
  int e = j->err;
  pthread_mutex_unlock(&j->mu);
  return e ? throw_failed(env, j) : NULL;
}

/** journalStats(j) -> counters (also after close). */
napi_value journal_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1], o, v;
  pm_journal *j;
  if (get_args(env, info, 1, argv, "journalStats") || !(j = journal_of(env, argv[0]))) return NULL;
  pthread_mutex_lock(&j->mu);
  const struct { const char *name; double value; } nums[] = {
      {"capacity", (double)j->cap},
      {"usage", (double)(j->tail - j->start)},
      {"start", (double)j->start},
      {"tail", (double)j->tail},
      {"entries", (double)j->entries},
      {"batches", (double)j->batches},
      {"payloadBytes", (double)j->payload_bytes},
      {"inPlaceBytes", (double)j->inplace_bytes},
      {"metaBytes", (double)j->meta_bytes},
      {"fdatasyncs", (double)atomic_load(&j->syncs)},
      {"poolFdatasyncs", (double)atomic_load(&j->pool_syncs)},
      {"pwriteCalls", (double)atomic_load(&j->pwrites)},
      {"checkpoints", (double)j->checkpoints},
      {"checkpointBytes", (double)j->ckpt_bytes},
      {"lastCheckpointMs", j->last_ckpt_ms},
      {"waitsForSpace", (double)j->waits_for_space},
      {"queued", (double)(j->next_seq - 1 - atomic_load(&j->done))},
  };
  pthread_mutex_unlock(&j->mu);
  CHECK(napi_create_object(env, &o));
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    CHECK(napi_create_double(env, nums[i].value, &v));
    CHECK(napi_set_named_property(env, o, nums[i].name, v));
  }
  return o;
}

/**
 * journalClose(j, checkpoint): waits for every submitted entry, optionally checkpoints, stops
 * the threads, closes the files. Idempotent. Throws the failure if the journal failed.
 */
napi_value journal_close(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  pm_journal *j;
  bool ckpt;
  if (get_args(env, info, 2, argv, "journalClose") || !(j = journal_of(env, argv[0])) ||
      arg_bool(env, argv[1], "checkpoint", &ckpt))
    return NULL;
  if (j->closed) return NULL;
  shutdown_journal(j, ckpt);
  release_refs(j, true);
  return atomic_load(&j->failed) ? throw_failed(env, j) : NULL;
}

/** crc32c(data: Uint8Array, tableOnly?: boolean) -> the CRC-32C the journal uses (for tests). */
napi_value journal_crc32c(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  size_t argc = 2, len;
  uint8_t *data;
  bool table_only = false;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return throw_type(env, "pmstack: %s must be a Uint8Array", "data");
  if (arg_u8(env, argv[0], "data", &data, &len, NULL) || (argc > 1 && arg_bool(env, argv[1], "tableOnly", &table_only)))
    return NULL;
  pthread_once(&crc_once, crc_init);
  CHECK(napi_create_uint32(env, crc32c(0, data, len, table_only), &out));
  return out;
}
