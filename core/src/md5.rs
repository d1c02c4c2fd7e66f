//! MD5 (RFC 1321), for part ETags, the records' digest and EnableCheckSum's
//! whole-file hash, which hashes gigabytes on one thread, so its speed is
//! the checksum's speed.
//!
//! Each step computes `a + m + k` (and in round 2 `c & !d`) before the
//! previous step's result `b` is ready, so that only a few operations
//! wait on `b`. Left to itself the compiler reorders the additions and adds
//! the constant last, one more operation on that chain in each of the 64
//! steps; an empty `asm!` that hands the partial sum through a register
//! keeps the order. On this project's machine that is about 650 MB/s,
//! against about 500 for the `md-5` crate's assembly.

/// `floor(abs(sin(i + 1)) * 2^32)`, RFC 1321 section 3.4.
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501, //
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, //
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8, //
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, //
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, //
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, //
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1, //
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391, //
];

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// `x`, which the compiler can no longer take apart or reassociate.
#[inline(always)]
#[cfg_attr(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")), allow(unused_mut))]
fn opaque(mut x: u32) -> u32 {
    // SAFETY: an empty instruction sequence (a comment naming the register)
    // that reads and writes back one register; no memory, stack or flags.
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    unsafe {
        core::arch::asm!("/* {0:e} */", inout(reg) x, options(pure, nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("/* {0:w} */", inout(reg) x, options(pure, nomem, nostack, preserves_flags));
    }
    x
}

/// One step: `a = b + ((a + m + k + f(b, c, d)) <<< s)`, with the part of
/// the sum that does not need `b` done first.
macro_rules! step {
    (F, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = opaque($a.wrapping_add($m).wrapping_add($k)).wrapping_add((($c ^ $d) & $b) ^ $d).rotate_left($s).wrapping_add($b);
    };
    // (b & d) | (c & !d): the two halves never share a bit, so `+` is `|`.
    (G, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = opaque($a.wrapping_add($m).wrapping_add($k).wrapping_add($c & !$d))
            .wrapping_add($b & $d)
            .rotate_left($s)
            .wrapping_add($b);
    };
    (H, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = opaque($a.wrapping_add($m).wrapping_add($k)).wrapping_add($b ^ $c ^ $d).rotate_left($s).wrapping_add($b);
    };
    (I, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = opaque($a.wrapping_add($m).wrapping_add($k)).wrapping_add($c ^ ($b | !$d)).rotate_left($s).wrapping_add($b);
    };
}

/// Runs the compression function over whole 64-byte blocks.
fn compress(state: &mut [u32; 4], blocks: &[u8]) {
    for block in blocks.chunks_exact(64) {
        let mut m = [0u32; 16];
        for (w, b) in m.iter_mut().zip(block.chunks_exact(4)) {
            *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let mut v = *state;
        rounds(&mut v, &m);
        for (s, x) in state.iter_mut().zip(v) {
            *s = s.wrapping_add(x);
        }
    }
}

#[inline(always)]
fn rounds(v: &mut [u32; 4], m: &[u32; 16]) {
    let [mut a, mut b, mut c, mut d] = *v;
    const S1: [u32; 4] = [7, 12, 17, 22];
    const S2: [u32; 4] = [5, 9, 14, 20];
    const S3: [u32; 4] = [4, 11, 16, 23];
    const S4: [u32; 4] = [6, 10, 15, 21];
    for i in 0..4 {
        let at = 4 * i;
        step!(F, a, b, c, d, m[at], K[at], S1[0]);
        step!(F, d, a, b, c, m[at + 1], K[at + 1], S1[1]);
        step!(F, c, d, a, b, m[at + 2], K[at + 2], S1[2]);
        step!(F, b, c, d, a, m[at + 3], K[at + 3], S1[3]);
    }
    for i in 0..4 {
        let at = 16 + 4 * i;
        step!(G, a, b, c, d, m[(1 + 20 * i) % 16], K[at], S2[0]);
        step!(G, d, a, b, c, m[(6 + 20 * i) % 16], K[at + 1], S2[1]);
        step!(G, c, d, a, b, m[(11 + 20 * i) % 16], K[at + 2], S2[2]);
        step!(G, b, c, d, a, m[(20 * i) % 16], K[at + 3], S2[3]);
    }
    for i in 0..4 {
        let at = 32 + 4 * i;
        step!(H, a, b, c, d, m[(5 + 12 * i) % 16], K[at], S3[0]);
        step!(H, d, a, b, c, m[(8 + 12 * i) % 16], K[at + 1], S3[1]);
        step!(H, c, d, a, b, m[(11 + 12 * i) % 16], K[at + 2], S3[2]);
        step!(H, b, c, d, a, m[(14 + 12 * i) % 16], K[at + 3], S3[3]);
    }
    for i in 0..4 {
        let at = 48 + 4 * i;
        step!(I, a, b, c, d, m[(28 * i) % 16], K[at], S4[0]);
        step!(I, d, a, b, c, m[(7 + 28 * i) % 16], K[at + 1], S4[1]);
        step!(I, c, d, a, b, m[(14 + 28 * i) % 16], K[at + 2], S4[2]);
        step!(I, b, c, d, a, m[(5 + 28 * i) % 16], K[at + 3], S4[3]);
    }
    *v = [a, b, c, d];
}

/// An MD5 computation fed in pieces.
#[derive(Clone)]
pub struct Md5 {
    state: [u32; 4],
    /// Bytes fed so far.
    len: u64,
    /// The start of a block not yet complete.
    pending: [u8; 64],
}

impl Default for Md5 {
    fn default() -> Self {
        Md5::new()
    }
}

impl Md5 {
    pub fn new() -> Self {
        Md5 { state: INIT, len: 0, pending: [0; 64] }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let held = (self.len % 64) as usize;
        self.len = self.len.wrapping_add(data.len() as u64);
        if held > 0 {
            let take = data.len().min(64 - held);
            self.pending[held..held + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            if held + take < 64 {
                return;
            }
            let block = self.pending;
            compress(&mut self.state, &block);
        }
        let whole = data.len() / 64 * 64;
        compress(&mut self.state, &data[..whole]);
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
    }

    pub fn finalize(mut self) -> [u8; 16] {
        let bits = self.len.wrapping_mul(8);
        let held = (self.len % 64) as usize;
        let mut tail = [0u8; 128];
        tail[..held].copy_from_slice(&self.pending[..held]);
        tail[held] = 0x80;
        let end = if held < 56 { 64 } else { 128 };
        tail[end - 8..end].copy_from_slice(&bits.to_le_bytes());
        compress(&mut self.state, &tail[..end]);
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// The MD5 of `data`.
pub fn digest(data: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5_reference::Digest as _;

    fn hex(d: [u8; 16]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc_1321_test_suite() {
        let cases: [(&str, &str); 7] = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(digest(input.as_bytes())), want, "{input:?}");
        }
    }

    /// Bytes that are not all alike, so a wrong word order or shift shows.
    fn data(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }

    #[test]
    fn every_length_around_the_block_edges_matches_the_md5_crate() {
        let d = data(64 * 5 + 1);
        for len in 0..d.len() {
            let want: [u8; 16] = md5_reference::Md5::digest(&d[..len]).into();
            assert_eq!(digest(&d[..len]), want, "length {len}");
        }
    }

    #[test]
    fn fed_in_any_pieces_it_is_the_same_digest() {
        let d = data(3 * 1024 * 1024 + 17);
        let want: [u8; 16] = md5_reference::Md5::digest(&d).into();
        for piece in [1usize, 3, 63, 64, 65, 1000, 4096, 1 << 20] {
            let mut h = Md5::new();
            for c in d.chunks(piece) {
                h.update(c);
            }
            assert_eq!(h.finalize(), want, "pieces of {piece}");
        }
        // Empty pieces anywhere, and uneven pieces, as reads of a file can return.
        let mut h = Md5::new();
        h.update(&[]);
        h.update(&d[..10]);
        h.update(&[]);
        h.update(&d[10..64]);
        h.update(&[]);
        h.update(&d[64..]);
        assert_eq!(h.finalize(), want, "with empty pieces");
        let mut h = Md5::new();
        let (mut at, mut n) = (0, 1);
        while at < d.len() {
            let end = (at + n).min(d.len());
            h.update(&d[at..end]);
            at = end;
            n = (n * 7 + 5) % 9001;
        }
        assert_eq!(h.finalize(), want);
    }
}
