// The client side of the in-memory app tests (test/apps-kv, test/apps-httpd): a client Stack's
// connections, sends cut into one-buffer pieces (refused ones resent in order on WRITABLE), and
// what each connection received, handed to `onData` (the bytes are valid during the call only).

/**
 * @param cli the client Stack
 * @param opts.state extra fields of a new connection's state
 * @param opts.onData (state, bytes) for every DATA event
 */
export function memClient(cli, { state = () => ({}), onData }) {
  const conns = new Map(); // client conn id -> { closed, refused, ...state() }
  return {
    conns,
    /** Sends bytes in pieces of at most `seg` bytes; `step()` runs a turn between pieces when due. */
    send(conn, bytes, seg, step) {
      for (let at = 0; at < bytes.length; at += seg) {
        const n = Math.min(seg, bytes.length - at);
        const i = cli.pool.alloc();
        cli.pool.view(i, 128, n).set(bytes.subarray(at, at + n));
        const c = conns.get(conn);
        if (c.refused.length) c.refused.push({ index: i, offset: 128, length: n });
        else cli.send(conn, { index: i, offset: 128, length: n });
        // small pieces leave one per turn, so that each is a segment of its own
        if (seg < 1400 || cli.commandSpace() < 64) step();
      }
    },
    onClient(ev) {
      const c = conns.get(ev.conn);
      switch (ev.type) {
        case "CONNECTED":
          conns.set(ev.conn, { closed: false, refused: [], ...state() });
          cli.setNoDelay(ev.conn);
          break;
        case "DATA":
          onData(c, cli.pool.view(ev.buf, ev.off, ev.len));
          cli.pool.free(ev.buf);
          cli.recvd(ev.conn, ev.len);
          break;
        case "SEND_REFUSED":
          c.refused.push({ index: ev.buf, offset: ev.off, length: ev.len });
          break;
        case "WRITABLE": {
          const again = c.refused;
          c.refused = [];
          for (const n of again) cli.send(ev.conn, n);
          break;
        }
        case "PEER_CLOSED":
          cli.close(ev.conn);
          c.closed = true;
          break;
        case "CLOSED":
        case "RESET":
          if (c) c.closed = true;
          break;
      }
    },
  };
}
