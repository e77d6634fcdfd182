/* wasi-libc has no <net/if.h>. Debian's lwIP headers include it (posix/inet.h, for the socket
 * API, which the harness does not use); what they take from it is IF_NAMESIZE. */
#ifndef LWIP_HARNESS_WASM_NET_IF_H
#define LWIP_HARNESS_WASM_NET_IF_H
#define IF_NAMESIZE 16
#endif
