// A WebSocket over HTTP/2 (RFC 8441) with Node's own http2 client, frame by frame, against
// a server that must announce SETTINGS_ENABLE_CONNECT_PROTOCOL:
//
//   node h2_check.mjs URL [--ca FILE] [--binary] [--echo] [--stall]
//
// URL is http://HOST:PORT/PATH (cleartext HTTP/2 with prior knowledge) or https://... (TLS,
// ALPN h2). Checks: the server's settings allow extended CONNECT; CONNECT with
// :protocol=websocket gets 200; "tom" answered "hello tom" on one WebSocket while a second
// on the same HTTP/2 connection is open too (with --binary, the second echoes a binary
// message); a :protocol other than websocket gets 501; a close
// handshake with 1000. Prints "ok NAME" per check, exits non-zero at the first failure.
// With --stall: opens one WebSocket, asks for STALL_BYTES of echoes and never reads
// (prints "stalled" and waits for stdin to close), for the backpressure test.
import http2 from 'node:http2';
import fs from 'node:fs';
import crypto from 'node:crypto';

const args = process.argv.slice(2);
const url = new URL(args[0]);
const caIndex = args.indexOf('--ca');
const ca = caIndex >= 0 ? fs.readFileSync(args[caIndex + 1]) : undefined;
const stall = args.includes('--stall');
const binary = args.includes('--binary');
// --echo: the server sends each message back as it came, instead of "hello <message>".
const expected = args.includes('--echo') ? 'tom' : 'hello tom';

function fail(message) {
    console.error(`FAIL ${message}`);
    process.exit(1);
}
setTimeout(() => fail('timed out'), 20000).unref();

// A masked client frame.
function frame(opcode, payload) {
    const mask = crypto.randomBytes(4);
    const len = payload.length;
    const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len])
        : len < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff])
        : (() => { const b = Buffer.alloc(10); b[0] = 0x80 | opcode; b[1] = 0x80 | 127; b.writeBigUInt64BE(BigInt(len), 2); return b; })();
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
    return Buffer.concat([head, mask, body]);
}

// Reads unmasked server frames from a stream: next() resolves with {opcode, payload}.
function reader(stream) {
    let buf = Buffer.alloc(0);
    const waiting = [];
    const frames = [];
    const pump = () => {
        for (;;) {
            if (buf.length < 2) break;
            let len = buf[1] & 0x7f, at = 2;
            if (buf[1] & 0x80) fail('a masked server frame');
            if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); at = 4; }
            else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); at = 10; }
            if (buf.length < at + len) break;
            frames.push({ fin: !!(buf[0] & 0x80), opcode: buf[0] & 0x0f, payload: buf.subarray(at, at + len) });
            buf = buf.subarray(at + len);
        }
        while (frames.length && waiting.length) waiting.shift()(frames.shift());
    };
    stream.on('data', (chunk) => { buf = Buffer.concat([buf, chunk]); pump(); });
    return () => new Promise((resolve) => { waiting.push(resolve); pump(); });
}

const client = http2.connect(url.origin, ca ? { ca } : {});
client.on('error', (e) => fail(`session error: ${e.message}`));

const settings = await new Promise((resolve) => client.once('remoteSettings', resolve));
if (!settings.enableConnectProtocol) fail('the server does not announce SETTINGS_ENABLE_CONNECT_PROTOCOL');
console.log('ok settings');

function open(protocol = 'websocket') {
    const stream = client.request({
        ':method': 'CONNECT',
        ':protocol': protocol,
        ':scheme': url.protocol.replace(':', ''),
        ':path': url.pathname + url.search,
        ':authority': url.host,
        'sec-websocket-version': '13',
        'origin': url.origin,
    });
    const status = new Promise((resolve) => stream.once('response', (h) => resolve(h[':status'])));
    return { stream, status, next: reader(stream) };
}

if (stall) {
    const ws = open();
    if ((await ws.status) !== 200) fail('no 200');
    const bytes = Number(process.env.STALL_BYTES || 8 << 20);
    ws.stream.pause();
    ws.stream.write(frame(0x1, `flood ${bytes}`));
    console.log('stalled');
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));
} else {
    const a = open();
    const b = open();
    if ((await a.status) !== 200 || (await b.status) !== 200) fail('CONNECT :protocol=websocket not answered 200');
    console.log('ok connect');
    a.stream.write(frame(0x1, 'tom'));
    const ma = await a.next();
    if (ma.opcode !== 1 || ma.payload.toString() !== expected) fail(`text answer: ${ma.opcode} ${ma.payload}`);
    if (binary) {
        b.stream.write(frame(0x2, Buffer.from([1, 2, 3])));
        const mb = await b.next();
        if (mb.opcode !== 2 || !mb.payload.equals(Buffer.from([1, 2, 3]))) fail('binary echo');
    }
    console.log('ok echo');
    console.log('ok two streams');

    const other = open('chat');
    if ((await other.status) !== 501) fail('a :protocol other than websocket is not 501');
    console.log('ok 501');

    const code = Buffer.alloc(2); code.writeUInt16BE(1000);
    a.stream.write(frame(0x8, code));
    const closing = await a.next();
    if (closing.opcode !== 8 || closing.payload.readUInt16BE(0) !== 1000) fail('close not echoed with 1000');
    console.log('ok close');
    b.stream.close();
    client.close();
    process.exit(0);
}
