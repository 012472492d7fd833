// CRC-32 (the zlib / ISO-HDLC one that node:zlib's crc32 computes) of two byte strings
// joined, from their own CRCs: what lets a frame's CRC cover a header written last without
// reading the megabytes after it again (tail.ts).
//
// A CRC-32 is a polynomial remainder over GF(2), so crc(A ‖ B) = crc(A)·x^(8·|B|) ⊕ crc(B)
// modulo the CRC polynomial (the pre- and post-inversion cancel out). Polynomials are held
// bit-reflected, as the CRC itself is: bit 31 is x^0, bit 0 is x^31.
const POLY = 0xedb88320;
const ONE = 0x80000000; // x^0

/** a·b modulo the CRC-32 polynomial. */
function mulModPoly(a: number, b: number): number {
  let product = 0;
  for (let bit = ONE; bit !== 0; bit >>>= 1) {
    if (a & bit) product ^= b;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1; // b·x
  }
  return product >>> 0;
}

// X_POW_2K[k] = x^(2^k): squares of x^1, enough for any byte count below 2^61.
const X_POW_2K: number[] = [ONE >>> 1];
for (let k = 1; k < 64; k++) X_POW_2K.push(mulModPoly(X_POW_2K[k - 1]!, X_POW_2K[k - 1]!));

/** x^(8·bytes) modulo the polynomial: what shifting a CRC past `bytes` bytes multiplies it by. */
function shiftBy(bytes: number): number {
  let result = ONE;
  for (let k = 3, n = bytes; n > 0; k++, n = Math.floor(n / 2)) {
    if (n % 2 === 1) result = mulModPoly(X_POW_2K[k]!, result);
  }
  return result;
}

/** crc32(A ‖ B) from crc32(A), crc32(B) and B's length in bytes. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (mulModPoly(shiftBy(lengthB), crcA) ^ crcB) >>> 0;
}
