// A .wasm file imported by the browser build: its bytes, embedded by esbuild's binary loader.
declare module "*.wasm" {
  const bytes: Uint8Array<ArrayBuffer>;
  export default bytes;
}
