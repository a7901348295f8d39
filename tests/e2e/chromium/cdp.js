'use strict';
// A minimal Chrome DevTools Protocol client for tests/e2e/t_chromium.sh.
// It needs nothing but Node's standard library (Debian 12's Node 18 has no
// WebSocket and the test must not fetch packages): the WebSocket handshake
// (RFC 6455 section 4) is done over http.request's 'upgrade' event and the
// frames are encoded and decoded here (text, continuation, ping, close).
//
//   node cdp.js PORT text URLPREFIX NEEDLE SECONDS
//       Poll the page whose URL starts with URLPREFIX (or any page) until
//       its document.body.innerText contains NEEDLE. Prints the page's URL,
//       title and text; exit 0 when found, 1 on timeout.
//   node cdp.js PORT screenshot FILE
//       Save a PNG of the first page to FILE.
//
// PORT is Chromium's --remote-debugging-port (read from DevToolsActivePort).
const http = require('http');
const crypto = require('crypto');
const fs = require('fs');

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function getJSON(port, path) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        try { resolve(JSON.parse(body)); } catch (e) { reject(new Error(`${path}: ${body}`)); }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${path}: timeout`)));
    req.on('error', reject);
  });
}

class Conn {
  constructor(socket, head) {
    this.socket = socket;
    this.buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
    this.parts = [];
    this.nextId = 1;
    this.pending = new Map();
    this.closed = false;
    socket.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    const gone = (why) => {
      if (this.closed) return;
      this.closed = true;
      for (const p of this.pending.values()) p.reject(new Error(`connection closed (${why})`));
      this.pending.clear();
    };
    socket.on('close', () => gone('close'));
    socket.on('error', (e) => gone(e.message));
    this.parse();
  }

  parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const op = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      const maskOff = off;
      if (masked) off += 4;
      if (b.length < off + len) return;
      const payload = Buffer.from(b.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= b[maskOff + (i % 4)];
      this.buf = b.subarray(off + len);
      if (op === 0x8) { this.socket.end(); return; }
      if (op === 0x9) { this.frame(0xa, payload); continue; }
      if (op === 0x1 || op === 0x2 || op === 0x0) {
        this.parts.push(payload);
        if (fin) {
          const text = Buffer.concat(this.parts).toString('utf8');
          this.parts = [];
          this.message(text);
        }
      }
    }
  }

  message(text) {
    let m;
    try { m = JSON.parse(text); } catch (e) { return; }
    if (m.id === undefined || !this.pending.has(m.id)) return; // events are ignored
    const p = this.pending.get(m.id);
    this.pending.delete(m.id);
    if (m.error) p.reject(new Error(`${p.method}: ${JSON.stringify(m.error)}`));
    else p.resolve(m.result);
  }

  // A client frame: always masked (RFC 6455 section 5.3).
  frame(op, data) {
    const len = data.length;
    let head;
    if (len < 126) {
      head = Buffer.from([0x80 | op, 0x80 | len]);
    } else if (len < 65536) {
      head = Buffer.alloc(4);
      head[0] = 0x80 | op; head[1] = 0x80 | 126; head.writeUInt16BE(len, 2);
    } else {
      head = Buffer.alloc(10);
      head[0] = 0x80 | op; head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(len), 2);
    }
    const mask = crypto.randomBytes(4);
    const body = Buffer.alloc(len);
    for (let i = 0; i < len; i++) body[i] = data[i] ^ mask[i % 4];
    this.socket.write(Buffer.concat([head, mask, body]));
  }

  call(method, params = {}, timeoutMs = 10000) {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        method,
        resolve: (r) => { clearTimeout(t); resolve(r); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
      this.frame(0x1, Buffer.from(JSON.stringify({ id, method, params }), 'utf8'));
    });
  }

  close() { if (!this.closed) { this.closed = true; this.socket.destroy(); } }
}

function connect(wsUrl) {
  const u = new URL(wsUrl);
  const key = crypto.randomBytes(16).toString('base64');
  const want = crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, timeout: 5000,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket',
        'Sec-WebSocket-Key': key, 'Sec-WebSocket-Version': '13',
      },
    });
    req.on('upgrade', (res, socket, head) => {
      if (res.headers['sec-websocket-accept'] !== want) {
        socket.destroy();
        reject(new Error('WebSocket handshake: wrong Sec-WebSocket-Accept'));
        return;
      }
      socket.setTimeout(0);
      resolve(new Conn(socket, head));
    });
    req.on('response', (res) => reject(new Error(`WebSocket handshake refused: HTTP ${res.statusCode}`)));
    req.on('timeout', () => req.destroy(new Error('WebSocket handshake: timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function page(port, prefix) {
  const list = await getJSON(port, '/json/list');
  const pages = list.filter((t) => t.type === 'page');
  return pages.find((t) => prefix && t.url.startsWith(prefix)) || pages[0];
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitText(port, prefix, needle, seconds) {
  const deadline = Date.now() + seconds * 1000;
  let conn = null;
  let connUrl = null;
  let last = 'no page target yet';
  while (Date.now() < deadline) {
    try {
      const t = await page(port, prefix);
      if (t && t.webSocketDebuggerUrl) {
        if (!conn || conn.closed || connUrl !== t.webSocketDebuggerUrl) {
          if (conn) conn.close();
          conn = await connect(t.webSocketDebuggerUrl);
          connUrl = t.webSocketDebuggerUrl;
        }
        const r = await conn.call('Runtime.evaluate', {
          expression: 'JSON.stringify({url: location.href, title: document.title,' +
            ' text: document.body ? document.body.innerText : ""})',
          returnByValue: true,
        });
        const v = JSON.parse(r.result.value);
        last = `url: ${v.url}\ntitle: ${v.title}\ntext: ${v.text}`;
        if (v.text.includes(needle)) {
          console.log(last);
          conn.close();
          return 0;
        }
      }
    } catch (e) {
      last = `${last}\n(DevTools: ${e.message})`;
      if (conn) { conn.close(); conn = null; }
    }
    await sleep(250);
  }
  if (conn) conn.close();
  console.log(`not found within ${seconds} s: ${JSON.stringify(needle)}\n${last}`);
  return 1;
}

async function screenshot(port, file) {
  const t = await page(port, null);
  if (!t) throw new Error('no page target');
  const conn = await connect(t.webSocketDebuggerUrl);
  const r = await conn.call('Page.captureScreenshot', { format: 'png' });
  fs.writeFileSync(file, Buffer.from(r.data, 'base64'));
  conn.close();
  return 0;
}

async function main(argv) {
  const [port, cmd, ...args] = argv;
  if (cmd === 'text' && args.length === 3) return waitText(port, args[0], args[1], Number(args[2]));
  if (cmd === 'screenshot' && args.length === 1) return screenshot(port, args[0]);
  console.error('usage: cdp.js PORT text URLPREFIX NEEDLE SECONDS | cdp.js PORT screenshot FILE');
  return 2;
}

main(process.argv.slice(2)).then(
  (rc) => process.exit(rc),
  (e) => { console.error(`cdp.js: ${e.message}`); process.exit(1); },
);
