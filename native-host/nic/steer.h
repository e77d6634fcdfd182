/*
 * The queue steering hash, written once for the two programs that use it: a multi-queue TAP
 * device's steering program (tap.c, TUNSETSTEERINGEBPF) and the egress program on the kernel's
 * end of a multi-queue veth pair whose other end pmstack serves with AF_XDP (xdp.c). Both pick
 * each frame's queue from its addresses and ports alone, the same both ways:
 *   h = saddr ^ daddr ^ (sport << 16 | dport)  (IPv6: the XOR of the eight address words)
 *   h = (h ^ h >> 16) & 0xffff;  queue = (h ^ h >> 8) % queues
 * (fragments and protocols without ports: the addresses only; not IP: h = 0, queue 0). The
 * core's steerQueueOf (assembly/tcp/table.ts) and the host's tapQueueOf compute the same.
 */
#ifndef PMSTACK_STEER_H
#define PMSTACK_STEER_H
#include <linux/bpf.h>

/* eBPF instructions (LD_ABS and LD_IND read the frame from its Ethernet header, through r6). */
#define I(c, d, s_, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s_), .off = (o), .imm = (i)})
#define MOVR(d, s_) I(BPF_ALU64 | BPF_MOV | BPF_X, d, s_, 0, 0)
#define MOVI(d, i) I(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define XORR(d, s_) I(BPF_ALU64 | BPF_XOR | BPF_X, d, s_, 0, 0)
#define ANDI(d, i) I(BPF_ALU64 | BPF_AND | BPF_K, d, 0, 0, i)
#define LSHI(d, i) I(BPF_ALU64 | BPF_LSH | BPF_K, d, 0, 0, i)
#define RSHI(d, i) I(BPF_ALU64 | BPF_RSH | BPF_K, d, 0, 0, i)
#define MODI(d, i) I(BPF_ALU64 | BPF_MOD | BPF_K, d, 0, 0, i)
#define MUL32I(d, i) I(BPF_ALU | BPF_MUL | BPF_K, d, 0, 0, i)
#define CALL(f) I(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define LDB(off) I(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, off)
#define LDH(off) I(BPF_LD | BPF_ABS | BPF_H, 0, 0, 0, off)
#define LDW(off) I(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, off)
#define LDIW(s_, off) I(BPF_LD | BPF_IND | BPF_W, 0, s_, 0, off)
#define JEQ(d, i, o) I(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define JNE(d, i, o) I(BPF_JMP | BPF_JNE | BPF_K, d, 0, o, i)
#define JA(o) I(BPF_JMP | BPF_JA, 0, 0, o, 0)
#define EXIT I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* The hash, 55 instructions: r1 = the skb on entry; r0 = the folded 16-bit hash at the end,
 * r6 = the skb. The program that uses it goes on after it (its queue is r0 % queues). */
#define STEER_HASH_INSNS                                                                          \
  MOVR(6, 1),          /*  0: r6 = skb (LD_ABS reads through it) */                               \
  LDH(12),             /*  1: ethertype */                                                        \
  JEQ(0, 0x0800, 3),   /*  2: IPv4 -> 6 */                                                        \
  JEQ(0, 0x86dd, 21),  /*  3: IPv6 -> 25 */                                                       \
  MOVI(8, 0),          /*  4: not IP: h = 0 */                                                    \
  JA(42),              /*  5: -> 48 */                                                            \
  MOVI(8, 0),          /*  6: IPv4: h = 0 */                                                      \
  LDH(20),             /*  7: flags and fragment offset */                                        \
  ANDI(0, 0x3fff),     /*  8: MF or an offset: a fragment */                                      \
  JNE(0, 0, 10),       /*  9: -> 20 (addresses only) */                                           \
  LDB(23),             /* 10: protocol */                                                         \
  JEQ(0, 6, 2),        /* 11: TCP -> 14 */                                                        \
  JEQ(0, 17, 1),       /* 12: UDP -> 14 */                                                        \
  JA(6),               /* 13: -> 20 */                                                            \
  LDB(14),             /* 14: version and IHL */                                                  \
  ANDI(0, 0xf),        /* 15 */                                                                   \
  LSHI(0, 2),          /* 16: header length */                                                    \
  MOVR(7, 0),          /* 17 */                                                                   \
  LDIW(7, 14),         /* 18: sport << 16 | dport */                                              \
  MOVR(8, 0),          /* 19 */                                                                   \
  LDW(26),             /* 20: saddr */                                                            \
  XORR(8, 0),          /* 21 */                                                                   \
  LDW(30),             /* 22: daddr */                                                            \
  XORR(8, 0),          /* 23 */                                                                   \
  JA(23),              /* 24: -> 48 */                                                            \
  MOVI(8, 0),          /* 25: IPv6: h = 0 */                                                      \
  LDB(20),             /* 26: next header */                                                      \
  JEQ(0, 6, 2),        /* 27: TCP -> 30 */                                                        \
  JEQ(0, 17, 1),       /* 28: UDP -> 30 */                                                        \
  JA(2),               /* 29: -> 32 */                                                            \
  LDW(54),             /* 30: sport << 16 | dport */                                              \
  MOVR(8, 0),          /* 31 */                                                                   \
  LDW(22), XORR(8, 0), LDW(26), XORR(8, 0), LDW(30), XORR(8, 0), LDW(34), XORR(8, 0), /* 32..39: saddr */ \
  LDW(38), XORR(8, 0), LDW(42), XORR(8, 0), LDW(46), XORR(8, 0), LDW(50), XORR(8, 0), /* 40..47: daddr */ \
  MOVR(0, 8),          /* 48: fold */                                                             \
  RSHI(0, 16),         /* 49 */                                                                   \
  XORR(8, 0),          /* 50 */                                                                   \
  ANDI(8, 0xffff),     /* 51 */                                                                   \
  MOVR(0, 8),          /* 52 */                                                                   \
  RSHI(0, 8),          /* 53 */                                                                   \
  XORR(0, 8)           /* 54 */

#endif
