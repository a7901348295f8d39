'use strict';
// node xwd2png.js SCREEN.xwd OUT.png
// Converts the frame buffer Xvfb keeps with -fbdir (an XWD file: TrueColor,
// 32 bits per pixel, ZPixmap) to PNG, so a failed t_chromium.sh leaves a
// screenshot of the whole screen (dialogs included) that any viewer opens.
// Standard library only.
const fs = require('fs');
const zlib = require('zlib');

const CRC_TABLE = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function crc32(buf) {
  let c = -1;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function shiftOf(mask) {
  let s = 0;
  while (mask && !(mask & 1)) { mask >>>= 1; s++; }
  return s;
}

const [inFile, outFile] = process.argv.slice(2);
if (!inFile || !outFile) {
  console.error('usage: xwd2png.js SCREEN.xwd OUT.png');
  process.exit(2);
}
const x = fs.readFileSync(inFile);
const h = (i) => x.readUInt32BE(4 * i);
const [headerSize, version, format] = [h(0), h(1), h(2)];
const [width, height, byteOrder, bpp, bytesPerLine] = [h(4), h(5), h(7), h(11), h(12)];
const [redMask, greenMask, blueMask, ncolors] = [h(14), h(15), h(16), h(19)];
if (version !== 7 || format !== 2 || bpp !== 32) {
  console.error(`${inFile}: unsupported XWD (version ${version}, format ${format}, ${bpp} bpp)`);
  process.exit(1);
}
const data = headerSize + 12 * ncolors;
const rs = shiftOf(redMask); const gs = shiftOf(greenMask); const bs = shiftOf(blueMask);
const raw = Buffer.alloc(height * (1 + 3 * width));
for (let y = 0; y < height; y++) {
  const row = y * (1 + 3 * width); // filter byte 0, then RGB
  for (let i = 0; i < width; i++) {
    const o = data + y * bytesPerLine + 4 * i;
    const p = byteOrder === 0 ? x.readUInt32LE(o) : x.readUInt32BE(o);
    raw[row + 1 + 3 * i] = (p & redMask) >>> rs;
    raw[row + 2 + 3 * i] = (p & greenMask) >>> gs;
    raw[row + 3 + 3 * i] = (p & blueMask) >>> bs;
  }
}
const ihdr = Buffer.alloc(13);
ihdr.writeUInt32BE(width, 0);
ihdr.writeUInt32BE(height, 4);
ihdr[8] = 8; // bit depth
ihdr[9] = 2; // truecolour
fs.writeFileSync(outFile, Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
]));
