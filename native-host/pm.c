/*
 * pmstack_native: maps persistent-memory pool files into a WebAssembly.Memory
 * and makes ranges of them durable. Plain C on node_api.h; Linux only.
 *
 * Errors are JS Error objects whose .code is the errno name ('EEXIST', ...)
 * and whose message names the file and the problem, e.g.
 *   pmstack: cannot lock /x/pool.pm: it is locked by another process (EWOULDBLOCK)
 * Wrong argument types throw TypeError with code 'ERR_INVALID_ARG_TYPE'.
 */
#include "pm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PM_X86 1
#endif

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000
#endif

#define LINE 64u                    /* cache-line size used for flushing */
#define STACK_RANGES 256            /* persistBatch ranges handled without malloc */

static const char *const mode_names[] = {"msync", "clwb", "clflushopt", "clflush", "strict", "journal"};

static const napi_type_tag MAP_TAG = {0x706d737461636b5fULL, 0x6d61702d68616e64ULL};
static struct { bool clwb, clflushopt, clflush; } cpu;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void detect_cpu(void) {
#ifdef PM_X86
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) cpu.clflush = (d >> 19) & 1;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    cpu.clflushopt = (b >> 23) & 1;
    cpu.clwb = (b >> 24) & 1;
  }
#endif
}

/* ---------- errors ---------- */

const char *errname(int e) {
  if (e == EAGAIN) return "EWOULDBLOCK"; /* only flock gives it here */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
  const char *n = strerrorname_np(e);
  if (n) return n;
#endif
  return "EIO";
}

const char *plain(int e) {
  switch (e) {
  case ENOENT: return "no such file or directory";
  case EEXIST: return "it already exists";
  case EACCES: case EPERM: return "it is not writable (permission denied)";
  case EROFS: return "it is not writable (read-only file system)";
  case EAGAIN: return "it is locked by another process";
  case ENOSPC: return "no space left on the file system";
  case EFBIG: return "the size is too large for this file system";
  case EISDIR: return "it is a directory, not a regular file";
  case ENOTDIR: return "a component of the path is not a directory";
  case EBADF: return "not an open file descriptor";
  default: return strerror(e);
  }
}

/* Throws Error(message) with .code = code; message gets " (code)" appended. Returns NULL. */
napi_value throw_code(napi_env env, const char *code, const char *fmt, ...) {
  char msg[PATH_MAX + 512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg - 32, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n > sizeof msg - 32) n = sizeof msg - 32;
  snprintf(msg + n, sizeof msg - n, " (%s)", code);
  napi_value err = make_error(env, code, msg);
  if (!err || napi_throw(env, err) != napi_ok) napi_throw_error(env, code, msg);
  return NULL;
}

/* new Error(msg) with .code = code (Node's own error shape), or NULL if it cannot be made. */
napi_value make_error(napi_env env, const char *code, const char *msg) {
  napi_value c, m, err;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok ||
      napi_create_error(env, c, m, &err) != napi_ok)
    return NULL;
  return err;
}

/* "pmstack: cannot <verb> <path>: <detail><plain words> (ECODE)" for a system error. */
napi_value throw_sys(napi_env env, int e, const char *verb, const char *path, const char *detail) {
  return throw_code(env, errname(e), "pmstack: cannot %s %s: %s%s", verb, path, detail ? detail : "", plain(e));
}

napi_value throw_type(napi_env env, const char *fmt, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, fmt, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

/* Turns a failed Node-API call into a JS exception (unless one is pending). */
void throw_napi(napi_env env, const char *call) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  throw_code(env, "EINVAL", "pmstack: Node-API call %s failed: %s", call,
             info && info->error_message ? info->error_message : "unknown error");
}

/*
 * Paths of the fds that create()/open() returned, for error messages (an fd made by
 * create() was opened under its temporary name, so /proc would show that). Entries are
 * checked against the inode, so a stale one is never used.
 */
typedef struct { char *path; dev_t dev; ino_t ino; } fd_name;
static fd_name *fd_names;
static size_t fd_names_len;
static pthread_mutex_t fd_names_lock = PTHREAD_MUTEX_INITIALIZER;

static void fd_name_set(int fd, const char *path) {
  struct stat st;
  if (fstat(fd, &st)) return;
  pthread_mutex_lock(&fd_names_lock);
  if ((size_t)fd >= fd_names_len) {
    size_t n = (size_t)fd * 2 + 16;
    fd_name *p = realloc(fd_names, n * sizeof *p);
    if (p) {
      memset(p + fd_names_len, 0, (n - fd_names_len) * sizeof *p);
      fd_names = p;
      fd_names_len = n;
    }
  }
  if ((size_t)fd < fd_names_len) {
    free(fd_names[fd].path);
    fd_names[fd] = (fd_name){strdup(path), st.st_dev, st.st_ino};
  }
  pthread_mutex_unlock(&fd_names_lock);
}

static void fd_name_clear(int fd) {
  pthread_mutex_lock(&fd_names_lock);
  if (fd >= 0 && (size_t)fd < fd_names_len) {
    free(fd_names[fd].path);
    fd_names[fd].path = NULL;
  }
  pthread_mutex_unlock(&fd_names_lock);
}

/* The path of an open fd (from create/open, else /proc), or "fd N", for messages. */
static void fd_path(int fd, char *buf, size_t size) {
  struct stat st;
  bool found = false;
  if (fstat(fd, &st) == 0) {
    pthread_mutex_lock(&fd_names_lock);
    fd_name *e = (size_t)fd < fd_names_len ? &fd_names[fd] : NULL;
    if (e && e->path && e->dev == st.st_dev && e->ino == st.st_ino) {
      snprintf(buf, size, "%s", e->path);
      found = true;
    }
    pthread_mutex_unlock(&fd_names_lock);
  }
  if (found) return;
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, buf, size - 1);
  if (n <= 0) snprintf(buf, size, "fd %d", fd);
  else buf[n] = 0;
}

/* ---------- argument helpers: 0 on success, -1 with an exception pending ---------- */

int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn) {
  size_t argc = want;
  CHECK_I(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < want) {
    char msg[128];
    snprintf(msg, sizeof msg, "pmstack: %s() expects %zu arguments, got %zu", fn, want, argc);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return -1;
  }
  return 0;
}

int arg_path(napi_env env, napi_value v, char *buf) {
  size_t len;
  napi_status s = napi_get_value_string_utf8(env, v, buf, PATH_MAX, &len);
  if (s == napi_string_expected) return throw_type(env, "pmstack: %s must be a string", "path"), -1;
  CHECK_I(s);
  if (len == 0) return throw_code(env, "ENOENT", "pmstack: the path is empty"), -1;
  if (len >= PATH_MAX - 1)
    return throw_code(env, "ENAMETOOLONG", "pmstack: path %.64s... is too long", buf), -1;
  if (strlen(buf) != len) return throw_code(env, "EINVAL", "pmstack: path %s contains a NUL byte", buf), -1;
  return 0;
}

/* A non-negative integer number up to 2^53. */
int arg_u64(napi_env env, napi_value v, const char *what, uint64_t *out) {
  double d;
  napi_status s = napi_get_value_double(env, v, &d);
  if (s == napi_number_expected) return throw_type(env, "pmstack: %s must be a number", what), -1;
  CHECK_I(s);
  if (!(d >= 0 && d <= MAX_SAFE) || d != floor(d))
    return throw_code(env, "EINVAL", "pmstack: %s must be a non-negative integer, got %g", what, d), -1;
  *out = (uint64_t)d;
  return 0;
}

static int arg_fd(napi_env env, napi_value v, int *fd) {
  uint64_t u;
  if (arg_u64(env, v, "fd", &u)) return -1;
  if (u > INT_MAX) return throw_code(env, "EBADF", "pmstack: fd %llu is not a file descriptor", (unsigned long long)u), -1;
  *fd = (int)u;
  return 0;
}

int arg_u8(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len, napi_value *ab) {
  bool is = false;
  napi_typedarray_type t;
  size_t off;
  void *p;
  CHECK_I(napi_is_typedarray(env, v, &is));
  if (is) CHECK_I(napi_get_typedarray_info(env, v, &t, len, &p, ab, &off));
  if (!is || t != napi_uint8_array) return throw_type(env, "pmstack: %s must be a Uint8Array", what), -1;
  *data = p;
  if (ab && off != 0) return throw_code(env, "EINVAL", "pmstack: %s must start at byte 0 of its buffer", what), -1;
  return 0;
}

/* ---------- files ---------- */

/* Names the file system of fd; *dax is set if the kernel says the file is DAX. */
static const char *medium_of(int fd, bool *dax, char *buf, size_t size) {
  struct statfs sf;
  struct statx sx;
  *dax = statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) == 0 &&
         (sx.stx_attributes_mask & STATX_ATTR_DAX) && (sx.stx_attributes & STATX_ATTR_DAX);
  if (fstatfs(fd, &sf) != 0) return "unknown";
  switch ((unsigned long)sf.f_type) {
  case 0x01021994UL: return "tmpfs";
  case 0xEF53UL: return "ext4";
  case 0x58465342UL: return "xfs";
  case 0x9123683EUL: return "btrfs";
  default: snprintf(buf, size, "fs-0x%lx", (unsigned long)sf.f_type); return buf;
  }
}

/* {fd, size, medium, dax}; closes fd if the object cannot be made. */
static napi_value file_result(napi_env env, int fd, uint64_t size, const char *path) {
  char buf[32];
  bool dax;
  const char *medium = medium_of(fd, &dax, buf, sizeof buf);
  napi_value o, v;
  if (napi_create_object(env, &o) != napi_ok) goto fail;
  if (napi_create_int32(env, fd, &v) != napi_ok || napi_set_named_property(env, o, "fd", v) != napi_ok) goto fail;
  if (napi_create_double(env, (double)size, &v) != napi_ok || napi_set_named_property(env, o, "size", v) != napi_ok) goto fail;
  if (napi_create_string_utf8(env, medium, NAPI_AUTO_LENGTH, &v) != napi_ok ||
      napi_set_named_property(env, o, "medium", v) != napi_ok) goto fail;
  if (napi_get_boolean(env, dax, &v) != napi_ok || napi_set_named_property(env, o, "dax", v) != napi_ok) goto fail;
  fd_name_set(fd, path);
  return o;
fail:
  throw_napi(env, "file_result");
  close(fd);
  return NULL;
}

int fsync_dir(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno;
  int e = fsync(dfd) ? errno : 0;
  close(dfd);
  return e;
}

/**
 * create(path, size, header: Uint8Array) -> {fd, size, medium, dax}
 * Creates a new pool file atomically: writes <path>.tmp.<pid> (exclusive, locked,
 * fallocated, header at offset 0, fsynced), links it to <path> and fsyncs the directory.
 * On any failure nothing is left on disk. The returned fd holds the flock.
 */
static napi_value pm_create(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char path[PATH_MAX], tmp[PATH_MAX + 32], detail[96];
  uint64_t size;
  uint8_t *hdr;
  size_t hlen;
  struct stat st;
  if (get_args(env, info, 3, argv, "create") || arg_path(env, argv[0], path) ||
      arg_u64(env, argv[1], "size", &size) || arg_u8(env, argv[2], "header", &hdr, &hlen, NULL))
    return NULL;
  if (size == 0 || size % PG)
    return throw_code(env, "EINVAL", "pmstack: cannot create %s: size %llu is not a positive multiple of %u",
                      path, (unsigned long long)size, PG);
  if (hlen > size)
    return throw_code(env, "EINVAL", "pmstack: cannot create %s: the header (%zu bytes) is larger than the file",
                      path, hlen);
  if (lstat(path, &st) == 0) return throw_sys(env, EEXIST, "create", path, NULL);
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
    return throw_sys(env, ENAMETOOLONG, "create", path, NULL);

  /* owner-only (0600): a pool holds every stored value; the umask can only take bits away */
  int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    if (e == EEXIST)
      return throw_code(env, "EEXIST", "pmstack: cannot create %s: a stale temporary file %s exists; remove it",
                        path, tmp);
    return throw_sys(env, e, "create", path, "making the temporary file: ");
  }
  int e = 0;
  bool linked = false;
  const char *step = "";
  if (flock(fd, LOCK_EX | LOCK_NB)) { e = errno; step = "locking the temporary file: "; goto fail; }
  if ((e = posix_fallocate(fd, 0, (off_t)size))) {
    snprintf(detail, sizeof detail, "allocating %llu bytes: ", (unsigned long long)size);
    step = detail;
    goto fail;
  }
  for (size_t done = 0; done < hlen;) {
    ssize_t n = pwrite(fd, hdr + done, hlen - done, (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { e = n < 0 ? errno : EIO; step = "writing the header: "; goto fail; }
    done += (size_t)n;
  }
  if (fsync(fd)) { e = errno; step = "fsync: "; goto fail; }
  if (link(tmp, path)) { e = errno; step = e == EEXIST ? "" : "linking the temporary file: "; goto fail; }
  linked = true;
  if (unlink(tmp)) { e = errno; step = "removing the temporary file: "; goto fail; }
  if ((e = fsync_dir(path))) { step = "fsync of its directory: "; goto fail; }
  return file_result(env, fd, size, path);
fail:
  if (linked) unlink(path);
  unlink(tmp);
  close(fd);
  return throw_sys(env, e, "create", path, step);
}

/**
 * open(path) -> {fd, size, medium, dax}
 * Opens an existing pool file read-write and takes flock(LOCK_EX|LOCK_NB) on it.
 * Does not modify the file.
 */
static napi_value pm_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[PATH_MAX];
  struct stat st;
  if (get_args(env, info, 1, argv, "open") || arg_path(env, argv[0], path)) return NULL;
  /* O_NONBLOCK so a FIFO cannot hang us; cleared below for the regular file. */
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return throw_sys(env, errno, "open", path, NULL);
  if (fstat(fd, &st)) {
    int e = errno;
    close(fd);
    return throw_sys(env, e, "open", path, "fstat: ");
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return throw_code(env, "EINVAL", "pmstack: cannot open %s: it is not a regular file", path);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  if (flock(fd, LOCK_EX | LOCK_NB)) {
    int e = errno;
    close(fd);
    return throw_sys(env, e, "lock", path, NULL);
  }
  return file_result(env, fd, (uint64_t)st.st_size, path);
}

/** pread(fd, u8: Uint8Array, offset) -> bytes read (fills u8 unless EOF comes first). */
static napi_value pm_pread(napi_env env, napi_callback_info info) {
  napi_value argv[3], r;
  int fd;
  uint8_t *buf;
  size_t len, done = 0;
  uint64_t off;
  if (get_args(env, info, 3, argv, "pread") || arg_fd(env, argv[0], &fd) ||
      arg_u8(env, argv[1], "buffer", &buf, &len, NULL) || arg_u64(env, argv[2], "offset", &off))
    return NULL;
  while (done < len) {
    ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      char p[PATH_MAX];
      fd_path(fd, p, sizeof p);
      return throw_sys(env, e, "read", p, NULL);
    }
    if (n == 0) break;
    done += (size_t)n;
  }
  CHECK(napi_create_double(env, (double)done, &r));
  return r;
}

/**
 * extend(fd, size): grows an open pool file to `size` bytes with posix_fallocate (so that no
 * later store can hit a hole: SIGBUS on a full disk) and fsyncs it. Never shrinks: a size below
 * the file's is EINVAL. The caller rewrites the superblock afterwards; until then the file is
 * longer than it says, which open() refuses unless it is asked to finish the growth.
 */
static napi_value pm_extend(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint64_t size;
  struct stat st;
  char p[PATH_MAX];
  if (get_args(env, info, 2, argv, "extend") || arg_fd(env, argv[0], &fd) || arg_u64(env, argv[1], "size", &size))
    return NULL;
  fd_path(fd, p, sizeof p);
  if (fstat(fd, &st)) return throw_sys(env, errno, "extend", p, "fstat: ");
  if (size % PG || size < (uint64_t)st.st_size)
    return throw_code(env, "EINVAL", "pmstack: cannot extend %s to %llu bytes: it has %llu (a pool never shrinks; "
                      "sizes are multiples of %u)", p, (unsigned long long)size, (unsigned long long)st.st_size, PG);
  int e = posix_fallocate(fd, 0, (off_t)size);
  if (e) return throw_sys(env, e, "extend", p, "allocating: ");
  if (fsync(fd)) return throw_sys(env, errno, "extend", p, "fsync: ");
  return NULL;
}

/** close(fd): closes the file, releasing its flock. */
static napi_value pm_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (get_args(env, info, 1, argv, "close") || arg_fd(env, argv[0], &fd)) return NULL;
  fd_name_clear(fd);
  if (close(fd) && errno != EINTR) {
    int e = errno;
    char msg[32];
    snprintf(msg, sizeof msg, "fd %d", fd);
    return throw_sys(env, e, "close", msg, NULL);
  }
  return NULL;
}

/* ---------- mapping ---------- */

static void map_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  pm_map *m = data;
  /* A live mapping stays in the memory; dropping the ref lets the memory be collected. */
  if (m->mem_ref) napi_delete_reference(env, m->mem_ref);
  if (m->fd >= 0) close(m->fd);
  free(m->path);
  free(m);
}

/* The handle's pm_map (live or not), or NULL with a TypeError. Only our tagged externals pass. */
static pm_map *map_of(napi_env env, napi_value v) {
  bool ok = false, pending = false;
  void *p = NULL;
  napi_value exc;
  if (napi_check_object_type_tag(env, v, &MAP_TAG, &ok) == napi_ok && ok &&
      napi_get_value_external(env, v, &p) == napi_ok && p)
    return p;
  /* null/undefined make the tag check throw; replace that with our TypeError. */
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &exc);
  return throw_type(env, "pmstack: %s must be a handle returned by map()", "handle"), NULL;
}

/* The handle's pm_map, or NULL with an exception (TypeError, or EBADF if unmapped). */
pm_map *get_map(napi_env env, napi_value v) {
  pm_map *m = map_of(env, v);
  if (!m) return NULL;
  if (!m->live) return throw_code(env, "EBADF", "pmstack: cannot use %s: the mapping is closed", m->path), NULL;
  return m;
}

/* Memory.prototype.buffer's own getter, so an own `buffer` property cannot fool us. */
static int memory_buffer(napi_env env, napi_value memory, napi_value *buf) {
  napi_value g, wa, ctor, proto, object, gopd, args[2], desc, getter, exc;
  CHECK_I(napi_get_global(env, &g));
  CHECK_I(napi_get_named_property(env, g, "WebAssembly", &wa));
  CHECK_I(napi_get_named_property(env, wa, "Memory", &ctor));
  CHECK_I(napi_get_named_property(env, ctor, "prototype", &proto));
  CHECK_I(napi_get_named_property(env, g, "Object", &object));
  CHECK_I(napi_get_named_property(env, object, "getOwnPropertyDescriptor", &gopd));
  args[0] = proto;
  CHECK_I(napi_create_string_utf8(env, "buffer", NAPI_AUTO_LENGTH, &args[1]));
  CHECK_I(napi_call_function(env, object, gopd, 2, args, &desc));
  CHECK_I(napi_get_named_property(env, desc, "get", &getter));
  if (napi_call_function(env, memory, getter, 0, NULL, buf) != napi_ok) {
    napi_get_and_clear_last_exception(env, &exc);
    return throw_type(env, "pmstack: %s must be a WebAssembly.Memory", "memory"), -1;
  }
  return 0;
}

/* Puts fresh zero pages at [p, p+len) so the Wasm memory stays valid. */
static int anon_pages(uint8_t *p, uint64_t len) {
  void *r = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  return r == MAP_FAILED ? errno : 0;
}

/**
 * map(memory, view, memOffset, fd, length, mode) -> {handle, persistMode, dax}
 * Maps file bytes [0, length) over memory bytes [memOffset, memOffset+length).
 * view must be new Uint8Array(memory.buffer). mode: 'auto' (clwb/clflushopt/clflush
 * when MAP_SYNC works, i.e. DAX; else msync), 'msync', 'clwb'/'clflushopt' (forced
 * cache-line flushing: only durable on DAX, for measurement), 'strict' (MAP_PRIVATE, tests)
 * or 'journal' (MAP_PRIVATE; persists become entries of the journal journalOpen attaches).
 * dax is true only if MAP_SYNC succeeded. Holds a reference on memory until unmap().
 */
static napi_value pm_map_file(napi_env env, napi_callback_info info) {
  napi_value argv[6], buf, viewbuf, handle, result, v;
  uint8_t *base;
  size_t vlen;
  uint64_t off, len;
  int fd;
  char mode_s[16], path[PATH_MAX];
  size_t mlen;
  bool same = false;
  struct stat st;
  if (get_args(env, info, 6, argv, "map") || memory_buffer(env, argv[0], &buf) ||
      arg_u8(env, argv[1], "view", &base, &vlen, &viewbuf) || arg_u64(env, argv[2], "memOffset", &off) ||
      arg_fd(env, argv[3], &fd) || arg_u64(env, argv[4], "length", &len))
    return NULL;
  napi_status s = napi_get_value_string_utf8(env, argv[5], mode_s, sizeof mode_s, &mlen);
  if (s == napi_string_expected) return throw_type(env, "pmstack: %s must be a string", "mode");
  CHECK(s);
  CHECK(napi_strict_equals(env, buf, viewbuf, &same));
  if (!same)
    return throw_code(env, "EINVAL", "pmstack: view must be new Uint8Array(memory.buffer) "
                                     "(re-create it after memory.grow())");
  fd_path(fd, path, sizeof path);
  if (fstat(fd, &st)) return throw_sys(env, errno, "map", path, NULL);
  if (!S_ISREG(st.st_mode)) return throw_code(env, "EINVAL", "pmstack: cannot map %s: it is not a regular file", path);
  if ((uintptr_t)base % PG || off % PG || len % PG || len == 0)
    return throw_code(env, "EINVAL", "pmstack: cannot map %s: memOffset %llu and length %llu must be multiples "
                      "of %u (and length > 0)", path, (unsigned long long)off, (unsigned long long)len, PG);
  if (len > (uint64_t)st.st_size)
    return throw_code(env, "EINVAL", "pmstack: cannot map %s: length %llu is larger than the file (%llu bytes)",
                      path, (unsigned long long)len, (unsigned long long)st.st_size);
  if (off > vlen || len > vlen - off)
    return throw_code(env, "EINVAL", "pmstack: cannot map %s: [%llu, %llu) does not fit in the memory (%zu bytes)",
                      path, (unsigned long long)off, (unsigned long long)(off + len), vlen);

  int mode;
  bool is_auto = !strcmp(mode_s, "auto");
  if (is_auto || !strcmp(mode_s, "msync")) mode = M_MSYNC;
  else if (!strcmp(mode_s, "clwb") && cpu.clwb) mode = M_CLWB;
  else if (!strcmp(mode_s, "clflushopt") && cpu.clflushopt) mode = M_CLFLUSHOPT;
  else if (!strcmp(mode_s, "strict")) mode = M_STRICT;
  else if (!strcmp(mode_s, "journal")) mode = M_JOURNAL;
  else if (!strcmp(mode_s, "clwb") || !strcmp(mode_s, "clflushopt"))
    return throw_code(env, "ENOTSUP", "pmstack: cannot map %s: this CPU has no %s instruction", path, mode_s);
  else
    return throw_code(env, "EINVAL", "pmstack: cannot map %s: mode must be 'auto', 'msync', 'clwb', "
                      "'clflushopt', 'strict' or 'journal', got '%s'", path, mode_s);

  /* Probe MAP_SYNC away from the memory: a failed MAP_FIXED could leave a hole in it. */
  bool dax = false;
  bool private = mode == M_STRICT || mode == M_JOURNAL; /* never MAP_SYNC */
  if (!private) {
    void *probe = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
    if (probe != MAP_FAILED) {
      dax = true;
      munmap(probe, len);
    } else if (errno != EOPNOTSUPP && errno != EINVAL) {
      return throw_sys(env, errno, "map", path, NULL);
    }
  }
  if (is_auto && dax)
    mode = cpu.clwb ? M_CLWB : cpu.clflushopt ? M_CLFLUSHOPT : cpu.clflush ? M_CLFLUSH : M_MSYNC;

  /*
   * Everything that can fail in JS land is done before the memory is touched. The map keeps
   * its own fd in every mode, not only the private ones: a journal attached to a map in
   * another mode (opened to replay what a journal-mode run left) checkpoints through it too.
   */
  pm_map *m = calloc(1, sizeof *m);
  char *pcopy = strdup(path);
  int wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (!m || !pcopy || wfd < 0) {
    int e = wfd < 0 ? errno : ENOMEM;
    free(m);
    free(pcopy);
    if (wfd >= 0) close(wfd);
    return throw_sys(env, e, "map", path, NULL);
  }
  *m = (pm_map){.base = base, .mem_size = vlen, .off = off, .len = len, .mode = mode, .dax = dax, .fd = wfd,
                .path = pcopy};
  if (napi_create_external(env, m, map_finalize, NULL, &handle) != napi_ok) {
    close(wfd);
    free(pcopy);
    free(m);
    throw_napi(env, "napi_create_external");
    return NULL;
  }
  /* From here the finalizer owns m. */
  CHECK(napi_type_tag_object(env, handle, &MAP_TAG));
  CHECK(napi_create_object(env, &result));
  CHECK(napi_set_named_property(env, result, "handle", handle));
  CHECK(napi_create_string_utf8(env, mode_names[mode], NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, result, "persistMode", v));
  CHECK(napi_get_boolean(env, dax, &v));
  CHECK(napi_set_named_property(env, result, "dax", v));
  CHECK(napi_create_reference(env, argv[0], 1, &m->mem_ref));

  int flags = private ? MAP_PRIVATE | MAP_FIXED
              : dax     ? MAP_SHARED_VALIDATE | MAP_SYNC | MAP_FIXED
                        : MAP_SHARED | MAP_FIXED;
  if (mmap(base + off, len, PROT_READ | PROT_WRITE, flags, fd, 0) == MAP_FAILED) {
    int e = errno;
    anon_pages(base + off, len); /* best effort: keep the range usable */
    napi_delete_reference(env, m->mem_ref);
    m->mem_ref = NULL;
    return throw_sys(env, e, "map", path, NULL);
  }
  m->live = true;
  return result;
}

/* ---------- flushing ---------- */

#ifdef PM_X86
static inline void flush_lines(int mode, uint8_t *p, uint64_t n) {
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)(LINE - 1), end = (uintptr_t)p + n;
  if (mode == M_CLWB)
    for (; a < end; a += LINE) __asm__ volatile("clwb %0" : "+m"(*(volatile char *)a));
  else if (mode == M_CLFLUSHOPT)
    for (; a < end; a += LINE) __asm__ volatile("clflushopt %0" : "+m"(*(volatile char *)a));
  else
    for (; a < end; a += LINE) __asm__ volatile("clflush %0" : "+m"(*(volatile char *)a));
}
static inline void sfence(void) { __asm__ volatile("sfence" ::: "memory"); }
#else
static inline void flush_lines(int mode, uint8_t *p, uint64_t n) { (void)mode, (void)p, (void)n; }
static inline void sfence(void) {}
#endif

/* msync of the pages covering memory [a, b); a, b inside the mapping. errno or 0. */
static int msync_range(pm_map *m, uint64_t a, uint64_t b) {
  a &= ~(uint64_t)(PG - 1);
  b = (b + PG - 1) & ~(uint64_t)(PG - 1);
  return msync(m->base + a, b - a, MS_SYNC) ? errno : 0;
}

/* M_STRICT: writes memory [a, b) to the same bytes of the file. errno or 0. */
static int strict_write(pm_map *m, uint64_t a, uint64_t b) {
  for (uint64_t done = 0; done < b - a;) {
    ssize_t n = pwrite(m->fd, m->base + a + done, b - a - done, (off_t)(a - m->off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    done += (uint64_t)n;
  }
  return 0;
}

bool inside(pm_map *m, uint64_t off, uint64_t len) {
  return off >= m->off && len <= m->len && off - m->off <= m->len - len;
}

static napi_value throw_outside(napi_env env, pm_map *m, uint64_t off, uint64_t len) {
  return throw_code(env, "EINVAL", "pmstack: cannot persist %s: range [%llu, %llu) is outside the mapping "
                    "[%llu, %llu)", m->path, (unsigned long long)off, (unsigned long long)(off + len),
                    (unsigned long long)m->off, (unsigned long long)(m->off + m->len));
}

static napi_value throw_no_journal(napi_env env, pm_map *m) {
  return throw_code(env, "EINVAL", "pmstack: cannot persist %s: journal mode needs a journal (journalOpen)", m->path);
}

/**
 * persist(handle, memOffset, length): makes memory [memOffset, memOffset+length) durable:
 * clwb/clflushopt/clflush of each line then sfence, msync(MS_SYNC) of its pages, pwrite
 * (strict) or a synchronous journal entry (journal).
 */
static napi_value pm_persist(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint64_t off, len;
  pm_map *m;
  if (get_args(env, info, 3, argv, "persist") || !(m = get_map(env, argv[0])) ||
      arg_u64(env, argv[1], "memOffset", &off) || arg_u64(env, argv[2], "length", &len))
    return NULL;
  if (!inside(m, off, len)) return throw_outside(env, m, off, len);
  if (m->mode == M_JOURNAL && !m->journal) return throw_no_journal(env, m);
  if (len == 0) return NULL;
  if (m->mode == M_JOURNAL) {
    range_t r = {off, off + len};
    journal_persist(env, m, &r, 1);
  } else if (m->mode == M_STRICT) {
    int e = strict_write(m, off, off + len);
    if (e) return throw_sys(env, e, "write", m->path, NULL);
  } else if (m->mode != M_MSYNC) {
    flush_lines(m->mode, m->base + off, len);
    sfence();
  } else {
    int e = msync_range(m, off, off + len);
    if (e) return throw_sys(env, e, "msync", m->path, NULL);
  }
  return NULL;
}

static int cmp_range(const void *x, const void *y) {
  const range_t *a = x, *b = y;
  return a->a < b->a ? -1 : a->a > b->a;
}

/*
 * Flushes `count` (offset, length) u32 pairs read from src (little-endian, maybe unaligned,
 * maybe shared with other threads: copied first, then validated, then used).
 */
static napi_value flush_pairs(napi_env env, pm_map *m, const uint8_t *src, uint64_t count) {
  range_t stack[STACK_RANGES], *r = stack;
  napi_value out;
  uint32_t syscalls = 0;
  if (count > STACK_RANGES && !(r = malloc(count * sizeof *r)))
    return throw_sys(env, ENOMEM, "persist", m->path, NULL);
  uint64_t n = 0;
  for (uint64_t i = 0; i < count; i++, src += 8) {
    uint64_t off = src[0] | src[1] << 8 | src[2] << 16 | (uint64_t)src[3] << 24;
    uint64_t len = src[4] | src[5] << 8 | src[6] << 16 | (uint64_t)src[7] << 24;
    if (!inside(m, off, len)) {
      if (r != stack) free(r);
      return throw_outside(env, m, off, len);
    }
    if (len) r[n++] = (range_t){off, off + len};
  }
  bool thrown = false;
  if (m->mode == M_JOURNAL) {
    /* one synchronous entry; it returns 0 (no msync) */
    if (!m->journal) {
      throw_no_journal(env, m);
      thrown = true;
    } else if (n) {
      thrown = journal_persist(env, m, r, n) != 0;
    }
  } else if (m->mode == M_STRICT && n) {
    /* byte ranges sorted and merged, one pwrite per run */
    qsort(r, n, sizeof *r, cmp_range);
    uint64_t a = r[0].a, b = r[0].b;
    for (uint64_t i = 1; i <= n; i++) {
      if (i < n && r[i].a <= b) {
        if (r[i].b > b) b = r[i].b;
        continue;
      }
      int e = strict_write(m, a, b);
      syscalls++;
      if (e) {
        if (r != stack) free(r);
        return throw_sys(env, e, "write", m->path, NULL);
      }
      if (i < n) a = r[i].a, b = r[i].b;
    }
  } else if (m->mode != M_MSYNC) {
    for (uint64_t i = 0; i < n; i++) flush_lines(m->mode, m->base + r[i].a, r[i].b - r[i].a);
    if (n) sfence();
  } else if (n) {
    for (uint64_t i = 0; i < n; i++) {
      r[i].a &= ~(uint64_t)(PG - 1);
      r[i].b = (r[i].b + PG - 1) & ~(uint64_t)(PG - 1);
    }
    qsort(r, n, sizeof *r, cmp_range);
    uint64_t a = r[0].a, b = r[0].b;
    for (uint64_t i = 1; i <= n; i++) {
      if (i < n && r[i].a <= b) { /* overlapping or adjacent: merge */
        if (r[i].b > b) b = r[i].b;
        continue;
      }
      int e = msync_range(m, a, b);
      syscalls++;
      if (e) {
        if (r != stack) free(r);
        return throw_sys(env, e, "msync", m->path, NULL);
      }
      if (i < n) a = r[i].a, b = r[i].b;
    }
  }
  if (r != stack) free(r);
  if (thrown) return NULL;
  CHECK(napi_create_uint32(env, syscalls, &out));
  return out;
}

static int arg_count(napi_env env, napi_value v, uint64_t *count) {
  if (arg_u64(env, v, "count", count)) return -1;
  if (*count > UINT32_MAX) return throw_code(env, "EINVAL", "pmstack: count %llu is too large", (unsigned long long)*count), -1;
  return 0;
}

/**
 * persistBatch(handle, ranges: Uint32Array, count) -> msync calls made
 * ranges holds [off0, len0, off1, len1, ...] in memory offsets. All are checked before any
 * is flushed. Cache-line modes: every line, then one sfence (returns 0). msync mode: pages
 * sorted and merged, one msync per merged run. Strict mode: one pwrite per merged run.
 * Journal mode: one synchronous journal entry of all the ranges (returns 0).
 */
static napi_value pm_persist_batch(napi_env env, napi_callback_info info) {
  napi_value argv[3], ab;
  napi_typedarray_type t;
  size_t n, boff;
  void *data;
  bool is = false;
  uint64_t count;
  pm_map *m;
  if (get_args(env, info, 3, argv, "persistBatch") || !(m = get_map(env, argv[0]))) return NULL;
  CHECK(napi_is_typedarray(env, argv[1], &is));
  if (is) CHECK(napi_get_typedarray_info(env, argv[1], &t, &n, &data, &ab, &boff));
  if (!is || t != napi_uint32_array) return throw_type(env, "pmstack: %s must be a Uint32Array", "ranges");
  if (arg_count(env, argv[2], &count)) return NULL;
  if (count > n / 2)
    return throw_code(env, "EINVAL", "pmstack: persistBatch: count %llu needs %llu entries but ranges has %zu",
                      (unsigned long long)count, (unsigned long long)count * 2, n);
  return flush_pairs(env, m, data, count);
}

/**
 * persistRanges(handle, tableMemOffset, count) -> msync calls made
 * Like persistBatch, but the u32 pairs are read from the Wasm memory at tableMemOffset.
 */
static napi_value pm_persist_ranges(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint64_t toff, count;
  pm_map *m;
  if (get_args(env, info, 3, argv, "persistRanges") || !(m = get_map(env, argv[0])) ||
      arg_u64(env, argv[1], "tableMemOffset", &toff) || arg_count(env, argv[2], &count))
    return NULL;
  if (toff > m->mem_size || count * 8 > m->mem_size - toff)
    return throw_code(env, "EINVAL", "pmstack: persistRanges: table [%llu, %llu) is outside the memory (%llu bytes)",
                      (unsigned long long)toff, (unsigned long long)(toff + count * 8),
                      (unsigned long long)m->mem_size);
  return flush_pairs(env, m, m->base + toff, count);
}

/**
 * unmap(handle): puts fresh zero pages where the file was (the memory stays valid), drops
 * the reference on the memory and closes the handle. Does not persist. Idempotent.
 * EBUSY while a journal is attached: its threads read the mapping (journalClose first).
 */
static napi_value pm_unmap(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pm_map *m;
  if (get_args(env, info, 1, argv, "unmap") || !(m = map_of(env, argv[0]))) return NULL;
  if (!m->live) return NULL;
  if (m->journal)
    return throw_code(env, "EBUSY", "pmstack: cannot unmap %s: its journal is open (journalClose first)", m->path);
  int e = anon_pages(m->base + m->off, m->len);
  if (e) return throw_sys(env, e, "unmap", m->path, NULL);
  m->live = false;
  if (m->mem_ref) napi_delete_reference(env, m->mem_ref);
  m->mem_ref = NULL;
  if (m->fd >= 0) close(m->fd);
  m->fd = -1;
  return NULL;
}

/** cpuFeatures() -> {clwb, clflushopt, clflush}: which flush instructions this CPU has. */
static napi_value pm_cpu_features(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, v;
  CHECK(napi_create_object(env, &o));
  CHECK(napi_get_boolean(env, cpu.clwb, &v));
  CHECK(napi_set_named_property(env, o, "clwb", v));
  CHECK(napi_get_boolean(env, cpu.clflushopt, &v));
  CHECK(napi_set_named_property(env, o, "clflushopt", v));
  CHECK(napi_get_boolean(env, cpu.clflush, &v));
  CHECK(napi_set_named_property(env, o, "clflush", v));
  return o;
}

NAPI_MODULE_INIT() {
  pthread_once(&cpu_once, detect_cpu);
  napi_property_descriptor d[] = {
      {"create", NULL, pm_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"open", NULL, pm_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pread", NULL, pm_pread, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, pm_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"extend", NULL, pm_extend, NULL, NULL, NULL, napi_enumerable, NULL},
      {"map", NULL, pm_map_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"persist", NULL, pm_persist, NULL, NULL, NULL, napi_enumerable, NULL},
      {"persistBatch", NULL, pm_persist_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"persistRanges", NULL, pm_persist_ranges, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unmap", NULL, pm_unmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cpuFeatures", NULL, pm_cpu_features, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalOpen", NULL, journal_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalReplay", NULL, journal_replay, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalSubmit", NULL, journal_submit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalSync", NULL, journal_sync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalWait", NULL, journal_wait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalDone", NULL, journal_done, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalCheckpoint", NULL, journal_checkpoint, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalStats", NULL, journal_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalClose", NULL, journal_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc32c", NULL, journal_crc32c, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof d / sizeof d[0], d) != napi_ok) return NULL;
  return exports;
}
