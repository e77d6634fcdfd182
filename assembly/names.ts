// Named buffers: (buffer index, offset, length) packed in 64 bits, the form in which names
// are stored in logs and indexes: bits 63-32 index, 31-16 offset, 15-0 length.

@inline export function namePack(index: u32, off: u32, len: u32): u64 {
  return (<u64>index << 32) | (<u64>(off & 0xffff) << 16) | <u64>(len & 0xffff);
}
@inline export function nameIndex(n: u64): u32 {
  return <u32>(n >>> 32);
}
@inline export function nameOffset(n: u64): u32 {
  return <u32>(n >>> 16) & 0xffff;
}
@inline export function nameLength(n: u64): u32 {
  return <u32>n & 0xffff;
}
