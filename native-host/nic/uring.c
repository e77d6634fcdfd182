#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "uring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

int uring_init(uring_t *u, unsigned entries) {
  struct io_uring_params p;
  memset(u, 0, sizeof *u);
  u->fd = -1;
  memset(&p, 0, sizeof p);
  /* One thread submits and reaps; completions are run only when it asks (no IPI, no task work
   * interrupting it). Kernels before 6.1 lack DEFER_TASKRUN: plain set-up there. */
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int fd = sys_setup(entries, &p);
  if (fd < 0 && errno == EINVAL) {
    memset(&p, 0, sizeof p);
    fd = sys_setup(entries, &p);
  }
  if (fd < 0) return -errno;
  u->fd = fd;
  u->entries = p.sq_entries;
  u->sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
  u->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  u->sqe_len = p.sq_entries * sizeof(struct io_uring_sqe);
  u->sq_map = mmap(0, u->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  u->cq_map = mmap(0, u->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
  u->sqes = mmap(0, u->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (u->sq_map == MAP_FAILED || u->cq_map == MAP_FAILED || u->sqes == MAP_FAILED) {
    int e = errno;
    uring_free(u);
    return -e;
  }
  uint8_t *sq = u->sq_map, *cq = u->cq_map;
  u->sq_head = (uint32_t *)(sq + p.sq_off.head);
  u->sq_tail = (uint32_t *)(sq + p.sq_off.tail);
  u->sq_mask = (uint32_t *)(sq + p.sq_off.ring_mask);
  u->sq_array = (uint32_t *)(sq + p.sq_off.array);
  u->cq_head = (uint32_t *)(cq + p.cq_off.head);
  u->cq_tail = (uint32_t *)(cq + p.cq_off.tail);
  u->cq_mask = (uint32_t *)(cq + p.cq_off.ring_mask);
  u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  return 0;
}

void uring_free(uring_t *u) {
  if (u->sq_map && u->sq_map != MAP_FAILED) munmap(u->sq_map, u->sq_len);
  if (u->cq_map && u->cq_map != MAP_FAILED) munmap(u->cq_map, u->cq_len);
  if (u->sqes && u->sqes != MAP_FAILED) munmap(u->sqes, u->sqe_len);
  if (u->fd >= 0) close(u->fd);
  memset(u, 0, sizeof *u);
  u->fd = -1;
}

struct io_uring_sqe *uring_sqe(uring_t *u) {
  uint32_t tail = *u->sq_tail + u->queued;
  if (tail - __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE) >= u->entries) return NULL;
  uint32_t i = tail & *u->sq_mask;
  u->sq_array[i] = i;
  u->queued++;
  struct io_uring_sqe *s = &u->sqes[i];
  memset(s, 0, sizeof *s);
  return s;
}

int uring_submit(uring_t *u, unsigned wait) {
  unsigned n = u->queued;
  __atomic_store_n(u->sq_tail, *u->sq_tail + n, __ATOMIC_RELEASE);
  u->queued = 0;
  for (;;) {
    long r = syscall(__NR_io_uring_enter, u->fd, n, wait, IORING_ENTER_GETEVENTS, NULL, 0);
    if (r < 0 && errno != EINTR) return -errno;
    if (r == 0 && n > 0) return -EBUSY; /* nothing taken: the rings are sized so this never happens */
    if (r > 0) n -= (unsigned)r < n ? (unsigned)r : n;
    /* A signal may end the wait early (the call then returns what it submitted): wait on. */
    uint32_t ready = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE) - *u->cq_head;
    if (n == 0 && ready >= wait) return 0;
  }
}

bool uring_cqe(uring_t *u, uint64_t *data, int32_t *res) {
  uint32_t head = *u->cq_head;
  if (head == __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE)) return false;
  struct io_uring_cqe *c = &u->cqes[head & *u->cq_mask];
  *data = c->user_data;
  *res = c->res;
  __atomic_store_n(u->cq_head, head + 1, __ATOMIC_RELEASE);
  return true;
}
