//! Fewer points than a capture has: a chart draws at most [`super::CHART_POINTS`] of them,
//! evenly spaced, whether the list is held ([`thin`]) or streamed ([`Sampler`]).

/// Every `stride`-th item of a stream of unknown length, the stride doubling each time
/// `2 × most` are held: what [`thin`] keeps of a list, without holding the list. Until the
/// first doubling it holds every item, so a stream of fewer than `2 × most` items thinned
/// afterwards gives exactly [`thin`]'s choice.
pub(super) struct Sampler<T> {
    most: usize,
    stride: usize,
    seen: usize,
    kept: Vec<T>,
}

impl<T> Sampler<T> {
    pub(super) fn new(most: usize) -> Sampler<T> {
        Sampler {
            most: most.max(1),
            stride: 1,
            seen: 0,
            kept: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, x: T) {
        if self.seen.is_multiple_of(self.stride) {
            self.kept.push(x);
            if self.kept.len() >= 2 * self.most {
                // Held: the items at multiples of the stride; now every other one of them.
                let mut k = 0;
                self.kept.retain(|_| {
                    k += 1;
                    (k - 1) % 2 == 0
                });
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }

    /// Items pushed.
    pub(super) fn seen(&self) -> usize {
        self.seen
    }

    /// Some items were left out.
    pub(super) fn thinned(&self) -> bool {
        self.stride > 1
    }

    pub(super) fn into_vec(self) -> Vec<T> {
        self.kept
    }
}

/// Keep at most `most` of `v`, evenly spaced (the first always kept).
pub(super) fn thin<T>(v: &mut Vec<T>, most: usize) {
    let step = v.len().div_ceil(most.max(1)).max(1);
    if step > 1 {
        let mut k = 0;
        v.retain(|_| {
            k += 1;
            (k - 1) % step == 0
        });
    }
}

/// Which of `items` (a sequence's connections in time order) a chart row draws, at most
/// `most` (more when the switches alone are more): every item whose `key` differs from a
/// neighbour's (the two sides of each switch, the row's story), the first and the last, then
/// the others evenly spaced. Indices, in order.
pub(super) fn switch_points<T, K: PartialEq>(
    items: &[T],
    most: usize,
    key: impl Fn(&T) -> K,
) -> Vec<usize> {
    if items.len() <= most {
        return (0..items.len()).collect();
    }
    let last = items.len() - 1;
    let (mut sides, mut others): (Vec<usize>, Vec<usize>) = (0..items.len()).partition(|&i| {
        let k = items.get(i).map(&key);
        i == 0
            || i == last
            || (i > 0 && items.get(i - 1).map(&key) != k)
            || items.get(i + 1).is_some_and(|n| Some(key(n)) != k)
    });
    thin(&mut others, most.saturating_sub(sides.len()));
    if sides.len() >= most {
        others.clear();
    }
    sides.extend(others);
    sides.sort_unstable();
    sides
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Until it first doubles the sampler holds everything, so it thins like [`thin`]; past
    /// that it holds evenly spaced items, never more than twice its target.
    #[test]
    fn the_sampler_keeps_evenly_spaced_items() {
        for n in [0, 1, 5, 19, 20, 21, 100, 1000, 12_345] {
            let mut s = Sampler::new(10);
            (0..n).for_each(|i| s.push(i));
            assert_eq!(s.seen(), n);
            let thinned = s.thinned();
            let kept = s.into_vec();
            assert!(kept.len() < 20, "{n}: {} held", kept.len());
            assert_eq!(thinned, n >= 20, "{n}");
            let stride = kept.get(1).map_or(1, |x| x - kept[0]);
            let even: Vec<usize> = (0..n).step_by(stride).collect();
            assert_eq!(kept, even, "{n}");
            if !thinned {
                let mut all: Vec<usize> = (0..n).collect();
                let mut held = kept.clone();
                thin(&mut all, 10);
                thin(&mut held, 10);
                assert_eq!(held, all, "{n}");
            }
        }
    }

    /// A long row keeps both sides of every switch, its ends, and evenly spaced others.
    #[test]
    fn a_row_keeps_its_switches() {
        // 1,000 connections on backend 1, but 400 and 401 on backend 2.
        let row: Vec<u32> = (0..1000)
            .map(|i| if i == 400 || i == 401 { 2 } else { 1 })
            .collect();
        let drawn = switch_points(&row, 10, |b| *b);
        for i in [0, 399, 400, 401, 402, 999] {
            assert!(drawn.contains(&i), "{i} in {drawn:?}");
        }
        assert_eq!(drawn.len(), 10, "{drawn:?}");
        assert!(drawn.windows(2).all(|w| w[0] < w[1]));
        // Short rows are drawn whole; switches alone past the budget are all kept.
        assert_eq!(
            switch_points(&row[..8], 10, |b| *b),
            (0..8).collect::<Vec<_>>()
        );
        let alternating: Vec<u32> = (0..100).map(|i| i % 2).collect();
        assert_eq!(switch_points(&alternating, 10, |b| *b).len(), 100);
    }
}
