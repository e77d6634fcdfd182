// The received segment being processed: its header fields and options, parsed once by
// parseSegment (called from tcpInput) and read by the state machine (input.ts, open.ts,
// recovery.ts, sack.ts). Nothing else writes them.

import { ld16, ld32 } from "../net/g";
import { SackBlock } from "./tcb";
import {
  TCP_HLEN, TCP_SEQ, TCP_ACK, TCP_WINDOW, TH_SYN, TH_FIN, thSrcPort, thDstPort, thFlags,
  TCPOPT_EOL, TCPOPT_NOP, TCPOPT_MSS, TCPOPT_WSCALE, TCPOPT_SACK_PERM, TCPOPT_SACK, TCPOPT_TIMESTAMP,
  TCPOLEN_MSS, TCPOLEN_WSCALE, TCPOLEN_SACK_PERM, TCPOLEN_SACK_BASE, TCPOLEN_SACK_BLOCK, TCPOLEN_TIMESTAMP,
  MAX_WSCALE, OPT_KIND, OPT_LEN, OPT_DATA, OPT_TS_ECR, SACK_LEFT, SACK_RIGHT,
} from "./wire";

// ---- header ----
export let sSport: u32 = 0;
export let sDport: u32 = 0;
export let sSeq: u32 = 0;
export let sAck: u32 = 0;
export let sFl: u32 = 0;
export let sWnd: u32 = 0; // as sent (unscaled)
export let sLen: u32 = 0; // payload bytes

/** Sequence space the segment occupies: payload, plus one each for SYN and FIN. */
@inline export function segSpace(): u32 {
  return sLen + ((sFl & TH_SYN) != 0 ? 1 : 0) + ((sFl & TH_FIN) != 0 ? 1 : 0);
}

// ---- options ----
export let oMss: u32 = 0; // 0: none
export let oWs: i32 = -1; // -1: none
export let oSackOk = false;
export let oTs = false;
export let oTsVal: u32 = 0;
export let oTsEcr: u32 = 0;
/** SACK blocks received (at most RX_SACK_MAX), read with rxSack(k). */
export let oSackN: u32 = 0;
const RX_SACK_MAX: u32 = 4;
const oSack: usize = memory.data(<i32>(RX_SACK_MAX * offsetof<SackBlock>()), 8);

/** Received SACK block k (< oSackN). */
@inline export function rxSack(k: u32): SackBlock {
  return changetype<SackBlock>(oSack + <usize>k * offsetof<SackBlock>());
}

/** Reads the header at th (payload length `len`) and its options (`doff` bytes of header). */
export function parseSegment(th: usize, doff: u32, len: u32): void {
  sSport = thSrcPort(th);
  sDport = thDstPort(th);
  sSeq = ld32(th + TCP_SEQ);
  sAck = ld32(th + TCP_ACK);
  sFl = thFlags(th);
  sWnd = ld16(th + TCP_WINDOW);
  sLen = len;
  parseOptions(th + TCP_HLEN, doff - TCP_HLEN);
}

/** Parses options in [p, p+len). Malformed options end parsing (the segment is still used). */
function parseOptions(p: usize, len: u32): void {
  oMss = 0;
  oWs = -1;
  oSackOk = false;
  oTs = false;
  oSackN = 0;
  let k: u32 = 0;
  while (k < len) {
    const kind = <u32>load<u8>(p + k + OPT_KIND);
    if (kind == TCPOPT_EOL) break;
    if (kind == TCPOPT_NOP) {
      k++;
      continue;
    }
    if (k + 1 >= len) break;
    const ol = <u32>load<u8>(p + k + OPT_LEN);
    if (ol < 2 || k + ol > len) break;
    if (kind == TCPOPT_MSS && ol == TCPOLEN_MSS) oMss = ld16(p + k + OPT_DATA);
    else if (kind == TCPOPT_WSCALE && ol == TCPOLEN_WSCALE) oWs = <i32>min<u32>(<u32>load<u8>(p + k + OPT_DATA), MAX_WSCALE);
    else if (kind == TCPOPT_SACK_PERM && ol == TCPOLEN_SACK_PERM) oSackOk = true;
    else if (kind == TCPOPT_SACK && ol >= TCPOLEN_SACK_BASE + TCPOLEN_SACK_BLOCK && ((ol - TCPOLEN_SACK_BASE) & 7) == 0) {
      for (let j = k + OPT_DATA; j + TCPOLEN_SACK_BLOCK <= k + ol && oSackN < RX_SACK_MAX; j += TCPOLEN_SACK_BLOCK) {
        const b = rxSack(oSackN++);
        b.l = ld32(p + j + SACK_LEFT);
        b.r = ld32(p + j + SACK_RIGHT);
      }
    } else if (kind == TCPOPT_TIMESTAMP && ol == TCPOLEN_TIMESTAMP) {
      oTs = true;
      oTsVal = ld32(p + k + OPT_DATA);
      oTsEcr = ld32(p + k + OPT_TS_ECR);
    }
    k += ol;
  }
}
