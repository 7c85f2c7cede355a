//! Random bytes from the operating system.

/// Fills `buf` from the OS's CSPRNG. Failure means the machine has no usable
/// randomness at all, which no part of yubin can work around.
pub fn fill(buf: &mut [u8]) {
    if let Err(error) = getrandom::fill(buf) {
        // Without randomness there are no salts, nonces or challenges; refusing
        // to continue is the only safe answer.
        panic!("the operating system's random number generator failed: {error}");
    }
}

/// `n` random bytes.
pub fn bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    fill(&mut buf);
    buf
}

/// A random string of `n` characters from `[A-Za-z0-9]`.
pub fn alphanumeric(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        fill(&mut buf);
        for &b in &buf {
            // 248 = 4 × 62: reject the tail so every character is equally likely.
            if b < 248 && out.len() < n {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    out
}
