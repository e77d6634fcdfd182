// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8. The same checksum as the
// superblock's (host/crc32c.ts); log records carry it. The 8 KiB of tables live in a static
// data block (no allocation) and are filled on first use.

const TABLES: usize = memory.data(8 * 1024, 64);
let ready = false;

function init(): void {
  for (let i: u32 = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c & 1) != 0 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    store<u32>(TABLES + (<usize>i << 2), c);
  }
  for (let i: u32 = 0; i < 256; i++) {
    let c = load<u32>(TABLES + (<usize>i << 2));
    for (let t: u32 = 1; t < 8; t++) {
      c = load<u32>(TABLES + (<usize>(c & 0xff) << 2)) ^ (c >>> 8);
      store<u32>(TABLES + (<usize>t << 10) + (<usize>i << 2), c);
    }
  }
  ready = true;
}

@inline function tab(t: u32, i: u32): u32 {
  return load<u32>(TABLES + (<usize>t << 10) + (<usize>i << 2));
}

/** Continues CRC-32C `crc` (0 to start) over the `n` bytes at memory offset `p`. */
export function crc32cUpdate(crc: u32, p: usize, n: usize): u32 {
  if (!ready) init();
  let c = ~crc;
  while (n >= 8) {
    const lo = load<u32>(p) ^ c;
    const hi = load<u32>(p + 4);
    c =
      tab(7, lo & 0xff) ^
      tab(6, (lo >>> 8) & 0xff) ^
      tab(5, (lo >>> 16) & 0xff) ^
      tab(4, lo >>> 24) ^
      tab(3, hi & 0xff) ^
      tab(2, (hi >>> 8) & 0xff) ^
      tab(1, (hi >>> 16) & 0xff) ^
      tab(0, hi >>> 24);
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = tab(0, (c ^ load<u8>(p)) & 0xff) ^ (c >>> 8);
    p++;
    n--;
  }
  return ~c;
}

/** CRC-32C of the `n` bytes at memory offset `p`. */
export function crc32c(p: usize, n: usize): u32 {
  return crc32cUpdate(0, p, n);
}
