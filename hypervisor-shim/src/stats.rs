//! The statistics of `compare`, as pure functions: the median, a distribution-free confidence
//! interval of the median from order statistics, Jain's fairness index, and the seeded shuffle
//! that orders each round.
//!
//! The interval: for `n` independent measurements of a continuous quantity, the number of them
//! below the true median is Binomial(n, 1/2). The interval between the k-th smallest and the
//! k-th largest value, `[x(k), x(n+1-k)]`, misses the median with probability
//! `2 P(B <= k-1)`; [`median_interval`] takes the largest `k` that keeps that at most
//! `1 - level`. It assumes nothing about the distribution (noise on a shared host is skewed and
//! heavy-tailed). At the 95 % level it needs at least 6 values (n = 6 gives `[min, max]`, which
//! covers the median with probability 1 - 2/64 = 96.9 %); with fewer there is no interval.

/// The median of `xs` (the mean of the two middle values for an even count); `None` if empty.
/// NaNs sort last (`f64::total_cmp`).
pub fn median(xs: &[f64]) -> Option<f64> {
    let s = sorted(xs);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// A confidence interval of the median by order statistics.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// Lower bound: the k-th smallest value.
    pub lo: f64,
    /// Upper bound: the k-th largest value.
    pub hi: f64,
    /// Its exact coverage, `1 - 2 P(Binomial(n, 1/2) <= k-1)` (at least the level asked for).
    pub coverage: f64,
}

/// `P(Binomial(n, 1/2) <= k)`.
pub fn binomial_half_cdf(n: u32, k: u32) -> f64 {
    // Summed in f64: exact enough for the n (rounds) used here; C(n, i) / 2^n computed by a
    // running product so that no intermediate overflows for n up to a few thousand.
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        sum += term;
        term *= f64::from(n - i) / f64::from(i + 1);
    }
    sum.min(1.0)
}

/// The distribution-free interval of the median of `xs` at confidence `level` (e.g. 0.95);
/// `None` if no order-statistic interval reaches that level (fewer than 6 values at 95 %).
pub fn median_interval(xs: &[f64], level: f64) -> Option<Interval> {
    let s = sorted(xs);
    let n = s.len() as u32;
    let alpha = 1.0 - level;
    // The largest k >= 1 with 2 P(B <= k-1) <= alpha.
    let mut best = None;
    for k in 1..=n.div_ceil(2) {
        let miss = 2.0 * binomial_half_cdf(n, k - 1);
        if miss <= alpha {
            best = Some((k, miss));
        } else {
            break;
        }
    }
    best.map(|(k, miss)| Interval {
        lo: s[(k - 1) as usize],
        hi: s[(n - k) as usize],
        coverage: 1.0 - miss,
    })
}

/// Jain's fairness index of `xs`: `(sum x)^2 / (n sum x^2)`, 1 when all are equal, `1/n` when
/// one value holds everything; `None` when empty or all zero.
pub fn jain(xs: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    (n > 0.0 && sq > 0.0).then(|| sum * sum / (n * sq))
}

/// The `q`-quantile (0..=1) of `xs` by the nearest-rank method (the smallest value with at
/// least `q` of the values at or below it); `None` if empty.
pub fn percentile(xs: &[f64], q: f64) -> Option<f64> {
    let s = sorted(xs);
    if s.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

/// Shuffles `items` in place, reproducibly for a given `seed` (fastrand's generator, seeded).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    fastrand::Rng::with_seed(seed).shuffle(items);
}

/// The seed of round `round` of a run started with `seed` (SplitMix64 of both, so that
/// neighbouring rounds get unrelated orders).
pub fn round_seed(seed: u64, round: u32) -> u64 {
    let mut z = seed ^ (u64::from(round) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The execution order of one round: every (group, run) pair of `sizes` (group `g` has
/// `sizes[g]` runs) exactly once, the groups in a random order and each group's runs in a
/// random order, reproducibly from (`seed`, `round`).
pub fn round_order(sizes: &[usize], seed: u64, round: u32) -> Vec<(usize, usize)> {
    let mut rng = fastrand::Rng::with_seed(round_seed(seed, round));
    let mut groups: Vec<usize> = (0..sizes.len()).collect();
    rng.shuffle(&mut groups);
    let mut order = Vec::with_capacity(sizes.iter().sum());
    for g in groups {
        let mut runs: Vec<usize> = (0..sizes[g]).collect();
        rng.shuffle(&mut runs);
        order.extend(runs.into_iter().map(|i| (g, i)));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn binomial_cdf_known_values() {
        assert!((binomial_half_cdf(6, 0) - 1.0 / 64.0).abs() < 1e-15);
        assert!((binomial_half_cdf(6, 1) - 7.0 / 64.0).abs() < 1e-15);
        assert!((binomial_half_cdf(10, 10) - 1.0).abs() < 1e-12);
        assert!((binomial_half_cdf(10, 4) - 386.0 / 1024.0).abs() < 1e-12);
    }

    #[test]
    fn interval_needs_six_values_at_95_percent() {
        let xs: Vec<f64> = (1..=5).map(f64::from).collect();
        assert_eq!(median_interval(&xs, 0.95), None, "n = 5: 2/32 > 5 %");
        assert_eq!(median_interval(&[1.0], 0.95), None, "one round: n/a");
        let xs = [6.0, 1.0, 5.0, 2.0, 4.0, 3.0];
        let i = median_interval(&xs, 0.95).expect("n = 6");
        assert_eq!((i.lo, i.hi), (1.0, 6.0));
        assert!((i.coverage - 62.0 / 64.0).abs() < 1e-12);
        // n = 9: P(B <= 1) = 10/512 = 1.95 % <= 2.5 %, P(B <= 2) = 46/512 > 2.5 %: k = 2.
        let xs: Vec<f64> = (1..=9).map(f64::from).collect();
        let i = median_interval(&xs, 0.95).unwrap();
        assert_eq!((i.lo, i.hi), (2.0, 8.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), Some(50.0));
        assert_eq!(percentile(&xs, 0.99), Some(99.0));
        assert_eq!(percentile(&xs, 1.0), Some(100.0));
        assert_eq!(percentile(&xs, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn jain_index_extremes() {
        assert_eq!(jain(&[]), None);
        assert_eq!(jain(&[0.0, 0.0]), None);
        assert_eq!(jain(&[3.0, 3.0, 3.0]), Some(1.0));
        assert_eq!(jain(&[4.0, 0.0, 0.0, 0.0]), Some(0.25));
    }

    #[test]
    fn shuffle_is_reproducible_and_seeds_differ() {
        let base: Vec<u32> = (0..20).collect();
        let (mut a, mut b, mut c) = (base.clone(), base.clone(), base.clone());
        shuffle(&mut a, 42);
        shuffle(&mut b, 42);
        shuffle(&mut c, 43);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(round_seed(1, 0), round_seed(1, 1));
    }

    #[test]
    fn a_round_runs_every_pair_once_grouped() {
        let sizes = [3, 1, 4];
        let o = round_order(&sizes, 7, 0);
        assert_eq!(o, round_order(&sizes, 7, 0), "reproducible");
        let mut sorted = o.clone();
        sorted.sort_unstable();
        let all: Vec<(usize, usize)> = sizes
            .iter()
            .enumerate()
            .flat_map(|(g, &n)| (0..n).map(move |i| (g, i)))
            .collect();
        assert_eq!(sorted, all);
        // A group's runs are contiguous (paired close together in time).
        for (g, &n) in sizes.iter().enumerate() {
            let pos: Vec<usize> = (0..o.len()).filter(|&p| o[p].0 == g).collect();
            assert_eq!(pos.last().unwrap() - pos[0] + 1, n);
        }
        let orders: Vec<_> = (0..8).map(|r| round_order(&sizes, 7, r)).collect();
        assert!(orders.iter().any(|x| *x != orders[0]), "rounds differ");
    }

    proptest! {
        #[test]
        fn median_and_interval_lie_within_the_data(xs in proptest::collection::vec(-1e9f64..1e9, 1..60)) {
            let m = median(&xs).unwrap();
            let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            prop_assert!(lo <= m && m <= hi);
            match median_interval(&xs, 0.95) {
                None => prop_assert!(xs.len() < 6),
                Some(i) => {
                    prop_assert!(xs.len() >= 6);
                    prop_assert!(i.lo <= m && m <= i.hi);
                    prop_assert!(i.coverage >= 0.95 && i.coverage <= 1.0);
                }
            }
        }

        #[test]
        fn jain_is_between_one_over_n_and_one(xs in proptest::collection::vec(0.0f64..1e6, 1..40)) {
            if let Some(j) = jain(&xs) {
                let n = xs.len() as f64;
                prop_assert!(j >= 1.0 / n - 1e-9 && j <= 1.0 + 1e-9);
            }
        }

        #[test]
        fn shuffle_is_a_permutation(mut xs in proptest::collection::vec(0u32..1000, 0..50), seed: u64) {
            let mut sorted_before = xs.clone();
            sorted_before.sort_unstable();
            shuffle(&mut xs, seed);
            xs.sort_unstable();
            prop_assert_eq!(xs, sorted_before);
        }
    }
}
