// INCRBYFLOAT's arithmetic, as Redis does it on x86-64: values are `long double`, the x87
// 80-bit extended format (a 64-bit significand, exponents down to 2^-16445 with subnormals, up
// to just under 2^16384), parsed with strtold, added with one rounding, and printed with
// "%.17Lf" and its trailing zeros removed (Redis's ld2string in LD_STR_HUMAN mode). JavaScript
// has no such type, so the values are exact BigInt binary fractions rounded by the same rules
// (to nearest, ties to even): 0.1 + 0.2 answers "0.3" here as in Redis, where doubles would
// give 0.30000000000000004.

/** A finite extended value, sign · m · 2^e (m < 2^64), or an infinity. */
export type LongDouble = { neg: boolean; m: bigint; e: number } | { neg: boolean; inf: true };

const BITS = 64n;
const MIN_EXP = -16445; // the smallest subnormal's exponent: 2^-16445
const MAX_TOP = 16383; // the largest finite value's leading bit: 2^16383

const bitLength = (x: bigint): number => (x === 0n ? 0 : x.toString(2).length);

/** n / 2^k rounded to nearest, ties to even (k > 0). */
function shiftRound(n: bigint, k: number): bigint {
  const q = n >> BigInt(k);
  const r = n - (q << BigInt(k));
  const half = 1n << BigInt(k - 1);
  return r > half || (r === half && (q & 1n) === 1n) ? q + 1n : q;
}

/**
 * The extended value nearest to the positive rational num / den (den > 0), with its sign;
 * null when it overflows or underflows to zero (strtold's ERANGE, which Redis refuses).
 */
function roundRational(neg: boolean, num: bigint, den: bigint): LongDouble | null {
  if (num === 0n) return { neg, m: 0n, e: 0 };
  // e such that num / den / 2^e has 64 bits before rounding
  let e = bitLength(num) - bitLength(den) - 64;
  for (;;) {
    let m = divRound(num, den, e);
    if (e < MIN_EXP) {
      // below the normal range: subnormals are rounded at the fixed smallest exponent
      e = MIN_EXP;
      m = divRound(num, den, e);
      if (m === 0n) return null;
      return { neg, m, e };
    }
    if (m >= 1n << BITS) {
      e++; // rounding carried into a 65th bit (or the estimate was one short)
      continue;
    }
    if (m < 1n << (BITS - 1n)) {
      e--;
      continue;
    }
    if (e + 63 > MAX_TOP) return null;
    return { neg, m, e };
  }
}

/** num / den / 2^e rounded to nearest, ties to even. */
function divRound(num: bigint, den: bigint, e: number): bigint {
  let n = num;
  let d = den;
  if (e >= 0) d <<= BigInt(e);
  else n <<= BigInt(-e);
  const q = n / d;
  const r2 = (n - q * d) * 2n;
  return r2 > d || (r2 === d && (q & 1n) === 1n) ? q + 1n : q;
}

/**
 * Redis's string2ld: strtold over the whole string (decimal or hex floats, "inf"/"infinity"),
 * refused when empty, longer than 5 KiB, with leading space or trailing bytes, NaN, or out of
 * range (ERANGE: an overflow to infinity or an underflow to zero). null when refused.
 */
export function parseLongDouble(s: string): LongDouble | null {
  if (s.length === 0 || s.length >= 5 * 1024 || /^\s/.test(s)) return null;
  let m = /^([+-]?)(inf|infinity)$/i.exec(s);
  if (m) return { neg: m[1] === "-", inf: true };
  m = /^([+-]?)0x([0-9a-f]*)(?:\.([0-9a-f]*))?(?:p([+-]?\d+))?$/i.exec(s);
  if (m) {
    const int = m[2] ?? "";
    const frac = m[3] ?? "";
    if (int === "" && frac === "") return null;
    const mant = BigInt("0x" + (int + frac || "0"));
    const exp = Number(m[4] ?? "0") - 4 * frac.length;
    if (!Number.isFinite(exp)) return null;
    const neg = m[1] === "-";
    if (mant === 0n) return { neg, m: 0n, e: 0 };
    return exp >= 0
      ? roundRational(neg, mant << BigInt(Math.min(exp, 20000)), 1n)
      : roundRational(neg, mant, 1n << BigInt(Math.min(-exp, 20000)));
  }
  m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(s);
  if (!m) return null;
  const int = m[2] ?? "";
  const frac = m[3] ?? "";
  if (int === "" && frac === "") return null;
  const neg = m[1] === "-";
  const digits = BigInt((int + frac).replace(/^0+/, "") || "0");
  if (digits === 0n) return { neg, m: 0n, e: 0 };
  let exp = Number(m[4] ?? "0") - frac.length;
  // far beyond the range either way: no need to build the power of ten
  const mag = exp + (int + frac).replace(/^0+/, "").length;
  if (mag > 5000) return null;
  if (mag < -5000) return null;
  if (exp >= 0) return roundRational(neg, digits * 10n ** BigInt(exp), 1n);
  exp = -exp;
  return roundRational(neg, digits, 10n ** BigInt(exp));
}

/** a + b with one rounding (to nearest, ties to even), as the x87 unit adds; null on overflow. */
export function addLongDouble(a: LongDouble, b: LongDouble): LongDouble | null {
  if ("inf" in a || "inf" in b) {
    if ("inf" in a && "inf" in b && a.neg !== b.neg) return null; // NaN
    return "inf" in a ? a : b;
  }
  const e = Math.min(a.e, b.e);
  const sa = (a.neg ? -a.m : a.m) << BigInt(a.e - e);
  const sb = (b.neg ? -b.m : b.m) << BigInt(b.e - e);
  const sum = sa + sb;
  if (sum === 0n) return { neg: false, m: 0n, e: 0 }; // x + (-x) is +0 when rounding to nearest
  const neg = sum < 0n;
  const abs = neg ? -sum : sum;
  if (e >= 0) return roundRational(neg, abs << BigInt(e), 1n);
  return roundRational(neg, abs, 1n << BigInt(-e));
}

/** Whether a value is an infinity. */
export const isInfinite = (v: LongDouble): boolean => "inf" in v;

/**
 * printf("%.17Lf") with the trailing zeros (and a bare point) removed, and "-0" as "0": the
 * exact value rounded to 17 decimals, ties to even, as glibc rounds.
 */
export function formatLongDouble(v: LongDouble): string {
  if ("inf" in v) return v.neg ? "-inf" : "inf";
  const scale = 10n ** 17n;
  let q: bigint;
  if (v.e >= 0) q = (v.m << BigInt(v.e)) * scale;
  else q = v.m === 0n ? 0n : shiftRound(v.m * scale, -v.e);
  let digits = q.toString().padStart(18, "0");
  const int = digits.slice(0, -17);
  const frac = digits.slice(-17).replace(/0+$/, "");
  digits = frac ? `${int}.${frac}` : int;
  return v.neg && digits !== "0" ? `-${digits}` : digits;
}
