/* The lwIP "port" for the Wasm build of the harness: what Debian's port/sys_arch.c gives the
 * native build, for one thread with no OS. */
#include <time.h>
#include "lwip/opt.h"
#include "lwip/sys.h"

u32_t sys_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (u32_t)(ts.tv_sec * 1000L + ts.tv_nsec / 1000000L);
}
u32_t sys_jiffies(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (u32_t)(ts.tv_sec * 1000000000L + ts.tv_nsec);
}
void sys_init(void) {}
void sys_mark_tcpip_thread(void) {}
void sys_check_core_locking(void) {}
sys_prot_t sys_arch_protect(void) { return 0; }
void sys_arch_unprotect(sys_prot_t pval) { (void)pval; }
#include "lwip/tcpip.h"
/* The harness runs without tcpip_init(): there is no tcpip thread to post to. */
err_t tcpip_try_callback(tcpip_callback_fn function, void *ctx) {
  (void)function;
  (void)ctx;
  return ERR_MEM;
}
