// Deterministic byte patterns keyed by a sequence number, to verify data after a crash.
export function fill(view, seq) {
  let x = (seq * 2654435761) >>> 0 || 1;
  for (let i = 0; i < view.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    view[i] = x & 0xff;
  }
}

export function matches(view, seq) {
  const want = new Uint8Array(view.length);
  fill(want, seq);
  for (let i = 0; i < view.length; i++) if (view[i] !== want[i]) return false;
  return true;
}
