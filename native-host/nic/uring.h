/*
 * The few io_uring calls the TAP backend uses to batch its frame I/O: many readv/writev in one
 * io_uring_enter (raw syscalls, no liburing). Every request is issued with RWF_NOWAIT and the
 * submitter waits for all of them in the same call, so a request never outlives the call that
 * made it: no buffer or iovec is held by the kernel between calls.
 */
#ifndef PMSTACK_URING_H
#define PMSTACK_URING_H
#include <linux/io_uring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  int fd;
  unsigned entries;
  uint32_t *sq_head, *sq_tail, *sq_mask, *sq_array;
  uint32_t *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  void *sq_map, *cq_map;
  size_t sq_len, cq_len, sqe_len;
  uint32_t queued; /* SQEs prepared since the last submit */
} uring_t;

/* 0, or -errno (ENOSYS: no io_uring in this kernel; EPERM: disabled by sysctl or seccomp). */
int uring_init(uring_t *u, unsigned entries);
void uring_free(uring_t *u);
/* A zeroed SQE to fill in, or NULL when the submission queue is full. */
struct io_uring_sqe *uring_sqe(uring_t *u);
/* Submits the queued SQEs and waits until `wait` completions are ready: >= 0, or -errno. */
int uring_submit(uring_t *u, unsigned wait);
/* Takes the next completion, if any. */
bool uring_cqe(uring_t *u, uint64_t *data, int32_t *res);
#endif
