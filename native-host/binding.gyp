{
  "targets": [
    {
      "target_name": "pmstack_native",
      "sources": ["pm.c", "journal.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"],
      "configurations": {
        "Release": { "cflags!": ["-O3"], "cflags": ["-O2"] }
      }
    },
    {
      "target_name": "pmstack_nic",
      "sources": ["nic/nic.c", "nic/tap.c", "nic/uring.c", "nic/xdp.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"],
      "configurations": {
        "Release": { "cflags!": ["-O3"], "cflags": ["-O2"] }
      }
    }
  ]
}
