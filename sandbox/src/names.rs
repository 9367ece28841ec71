//! Random name parts for test namespaces and fake objects.

use rand::Rng;

/// `n` random lowercase letters and digits (valid in Kubernetes names).
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
