// A self-signed certificate for pmstack.test (EC P-256, a day long), made by openssl in a
// scratch directory once per process: the tests that run node:tls over pmstack's sockets.
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { scratchDir } from "./tmp.mjs";

let certs = null;

/** { key, cert } as PEM buffers. */
export function testCert() {
  if (certs) return certs;
  const dir = scratchDir("tmpfs");
  const mk = spawnSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
      .concat(["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-subj", "/CN=pmstack.test"])
      .concat(["-addext", "subjectAltName=DNS:pmstack.test"]),
    { encoding: "utf8" },
  );
  assert.is(mk.status, 0, `openssl: ${mk.stderr}`);
  certs = { key: readFileSync(`${dir}/key.pem`), cert: readFileSync(`${dir}/cert.pem`) };
  return certs;
}
