/*
 * Declarations shared by pm.c (pool files and mappings) and journal.c (the write-ahead
 * journal of a mapping). Internal to the addon: nothing here is exported from the .node file.
 */
#ifndef PMSTACK_PM_H
#define PMSTACK_PM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>

#include <stdbool.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

#define MAX_SAFE 9007199254740992.0 /* 2^53: larger JS numbers are not exact */
#define PG 4096u                    /* offsets and lengths are multiples of this */

/*
 * M_STRICT (tests): the file is mapped MAP_PRIVATE, so stores stay in private copy-on-write
 * pages and reach the file only when persisted, by pwrite of the persisted ranges (no
 * fdatasync: it models PM's "a store is lost unless flushed" for process crashes, which is
 * what the crash tests kill; device durability is msync mode's business).
 * M_JOURNAL (block devices): MAP_PRIVATE too, and every persist is an entry of the journal
 * attached to the map (journal.c), which makes it durable on the device and writes it back
 * into the file at checkpoints.
 */
enum { M_MSYNC, M_CLWB, M_CLFLUSHOPT, M_CLFLUSH, M_STRICT, M_JOURNAL };

typedef struct pm_journal pm_journal;

/* One mapping of a file into a Wasm memory; the payload of a map() handle. */
typedef struct {
  uint8_t *base;       /* byte 0 of the Wasm memory */
  uint64_t mem_size;   /* memory byteLength at map time (memories never shrink) */
  uint64_t off, len;   /* the file occupies memory [off, off+len) */
  int mode;            /* M_* */
  bool dax, live;
  int fd;              /* a dup of the file's fd: strict-mode persists and journal checkpoints
                          write through it; -1 once unmapped */
  pm_journal *journal; /* the open journal attached by journalOpen, or NULL */
  napi_ref mem_ref;    /* keeps the Memory (and so `base`) alive while live */
  char *path;          /* for error messages */
} pm_map;

typedef struct { uint64_t a, b; } range_t; /* [a, b) in memory offsets */

/* ---- errors (pm.c): each throw_* returns NULL with a JS exception pending ---- */

const char *errname(int e);  /* errno -> "EIO", ... */
const char *plain(int e);    /* errno -> words for messages; calls strerror: JS thread only */
napi_value make_error(napi_env env, const char *code, const char *msg); /* Error with .code, or NULL */
napi_value throw_code(napi_env env, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
napi_value throw_sys(napi_env env, int e, const char *verb, const char *path, const char *detail);
napi_value throw_type(napi_env env, const char *fmt, const char *what);
void throw_napi(napi_env env, const char *call);

#define CHECK(call)                                                                                \
  do { if ((call) != napi_ok) { throw_napi(env, #call); return NULL; } } while (0)
#define CHECK_I(call)                                                                              \
  do { if ((call) != napi_ok) { throw_napi(env, #call); return -1; } } while (0)

/* ---- arguments (pm.c): 0 on success, -1 with an exception pending ---- */

int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn);
int arg_path(napi_env env, napi_value v, char *buf); /* buf holds PATH_MAX bytes */
int arg_u64(napi_env env, napi_value v, const char *what, uint64_t *out);
int arg_u8(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len, napi_value *ab);
pm_map *get_map(napi_env env, napi_value v); /* a live map() handle, or NULL with an exception */
bool inside(pm_map *m, uint64_t off, uint64_t len); /* memory [off, off+len) lies in the mapping */
int fsync_dir(const char *path);                    /* fsyncs path's directory: errno or 0 */

/* ---- the journal (journal.c) ---- */

/* persist/persistBatch/persistRanges on an M_JOURNAL map: one synchronous entry of the
 * validated ranges r[0..n), all payload (read from the mapping when written). */
int journal_persist(napi_env env, pm_map *m, const range_t *r, uint64_t n); /* 0, or -1 thrown */

napi_value journal_open(napi_env env, napi_callback_info info);
napi_value journal_replay(napi_env env, napi_callback_info info);
napi_value journal_submit(napi_env env, napi_callback_info info);
napi_value journal_sync(napi_env env, napi_callback_info info);
napi_value journal_wait(napi_env env, napi_callback_info info);
napi_value journal_done(napi_env env, napi_callback_info info);
napi_value journal_checkpoint(napi_env env, napi_callback_info info);
napi_value journal_stats(napi_env env, napi_callback_info info);
napi_value journal_close(napi_env env, napi_callback_info info);
napi_value journal_crc32c(napi_env env, napi_callback_info info);

#pragma GCC visibility pop

#endif
