//! A histogram of durations over fixed bucket bounds: counts only, no clock and no
//! exporter. The core and the event store fill these; the metrics endpoint
//! (`daemon::metrics`) renders them. Pure.

/// Durations in milliseconds counted into buckets with fixed upper bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    bounds_ms: &'static [u64],
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: Vec<u64>,
    sum_ms: u64,
    count: u64,
    max_ms: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending, inclusive).
    pub fn new(bounds_ms: &'static [u64]) -> Self {
        debug_assert!(bounds_ms.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Self {
            bounds_ms,
            counts: vec![0; bounds_ms.len() + 1],
            sum_ms: 0,
            count: 0,
            max_ms: 0,
        }
    }

    /// Counts one duration.
    pub fn observe(&mut self, ms: u64) {
        let bucket = self
            .bounds_ms
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(self.bounds_ms.len());
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count = self.count.saturating_add(1);
        self.max_ms = self.max_ms.max(ms);
    }

    /// Each bound with the number of observations above the previous bound and at
    /// or below this one, ascending. Those above every bound make up the rest of
    /// [`Histogram::count`].
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bounds_ms
            .iter()
            .copied()
            .zip(self.counts.iter().copied())
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations, in ms.
    pub fn sum_ms(&self) -> u64 {
        self.sum_ms
    }

    /// The largest observation, in ms (0 if none).
    pub fn max_ms(&self) -> u64 {
        self.max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        let mut h = Histogram::new(&[10, 100]);
        for ms in [0, 10, 11, 100, 5000] {
            h.observe(ms);
        }
        assert_eq!(h.buckets().collect::<Vec<_>>(), [(10, 2), (100, 2)]);
        assert_eq!((h.count(), h.sum_ms(), h.max_ms()), (5, 5121, 5000));
    }

    #[test]
    fn empty_histogram_has_zero_buckets() {
        let h = Histogram::new(&[1, 2, 3]);
        assert!(h.buckets().all(|(_, n)| n == 0));
        assert_eq!(h.count(), 0);
    }
}
