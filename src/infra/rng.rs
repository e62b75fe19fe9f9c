//! A small, seedable generator (SplitMix64): weight initialisation, shuffling and the noise coin
//! come from it, so the same seed gives the same run on every platform and backend.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }

    /// Approximately standard normal draws: the sum of 12 uniforms minus 6 (Irwin–Hall; mean 0,
    /// variance 1, tails cut at ±6). Only additions, so every platform — native or wasm, any libm —
    /// gives the same bits for the same seed, which a generated model's fingerprint relies on.
    pub fn normal(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| ((0..12).map(|_| self.next_f64()).sum::<f64>() - 6.0) as f32)
            .collect()
    }

    /// Uniform in [lo, hi), as f32.
    pub fn uniform(&mut self, lo: f64, hi: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (lo + (hi - lo) * self.next_f64()) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shuffles_everything() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut v: Vec<u32> = (0..100).collect();
        a.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
        assert!(
            a.uniform(-1.0, 1.0, 1000)
                .iter()
                .all(|x| (-1.0..1.0).contains(x))
        );
    }
}
