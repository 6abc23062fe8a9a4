//! Ranking metrics for one held-out target (HR@K, NDCG@K, MRR), coverage and intra-list
//! diversity.
//!
//! Scores are dense, one per item; an item scoring `f32::NEG_INFINITY` (or NaN) is not a
//! candidate (in the history, or out of the method's reach). A target that is not a
//! candidate has no rank: it counts as a miss everywhere.

/// True when `s` makes its item a candidate.
#[inline]
fn candidate(s: f32) -> bool {
    s > f32::NEG_INFINITY
}

/// Rank (from 1) of `target` among the candidates with pessimistic ties:
/// 1 + #items scoring strictly higher + #other items scoring equal. `None` when the
/// target is not a candidate.
pub fn rank_of(scores: &[f32], target: usize) -> Option<usize> {
    let t = *scores.get(target)?;
    if !candidate(t) {
        return None;
    }
    let at_least = scores.iter().filter(|&&s| s >= t).count();
    // `at_least` counts the target itself once.
    Some(at_least)
}

/// 1 when the target is within the top `k`.
pub fn hit_at(rank: Option<usize>, k: usize) -> f64 {
    match rank {
        Some(r) if r <= k => 1.0,
        _ => 0.0,
    }
}

/// `1 / log2(rank + 1)` when rank ≤ k, else 0.
pub fn ndcg_at(rank: Option<usize>, k: usize) -> f64 {
    match rank {
        Some(r) if r <= k => 1.0 / ((r + 1) as f64).log2(),
        _ => 0.0,
    }
}

/// `1 / rank`, 0 when unreachable.
pub fn reciprocal_rank(rank: Option<usize>) -> f64 {
    rank.map_or(0.0, |r| 1.0 / r as f64)
}

/// The `k` best candidates, best first; ties go to the lower index (deterministic).
pub fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..scores.len() as u32)
        .filter(|&i| candidate(scores[i as usize]))
        .collect();
    let cmp = |a: &u32, b: &u32| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then(a.cmp(b))
    };
    if idx.len() > k && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    } else if k == 0 {
        idx.clear();
    }
    idx.sort_unstable_by(cmp);
    idx
}

/// Share of the catalogue appearing in at least one list.
pub fn coverage<'a>(lists: impl IntoIterator<Item = &'a [u32]>, catalogue: usize) -> f64 {
    if catalogue == 0 {
        return 0.0;
    }
    let mut seen = vec![false; catalogue];
    let mut n = 0usize;
    for list in lists {
        for &i in list {
            if let Some(s) = seen.get_mut(i as usize)
                && !*s
            {
                *s = true;
                n += 1;
            }
        }
    }
    n as f64 / catalogue as f64
}

/// Mean pairwise `1 − cosine` over a list, given unit vectors by item; 0 for fewer than two.
pub fn intra_list_diversity<'a>(list: &[u32], vector: impl Fn(u32) -> &'a [f32]) -> f64 {
    let mut sum = 0.0f64;
    let mut pairs = 0usize;
    for (a, &i) in list.iter().enumerate() {
        for &j in &list[a + 1..] {
            let d = steerfeed::vector::dot(vector(i), vector(j));
            sum += 1.0 - f64::from(d);
            pairs += 1;
        }
    }
    if pairs == 0 { 0.0 } else { sum / pairs as f64 }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const NI: f32 = f32::NEG_INFINITY;

    #[test]
    fn rank_counts_higher_and_ties_pessimistically() {
        // Target 2 scores 0.5; item 0 scores higher, items 1 and 4 tie: rank 1 + 1 + 2 = 4.
        let s = [0.9, 0.5, 0.5, 0.1, 0.5];
        assert_eq!(rank_of(&s, 2), Some(4));
        assert_eq!(rank_of(&s, 0), Some(1));
        assert_eq!(rank_of(&s, 3), Some(5));
        // Excluded items do not count, even when they "score" high.
        let s = [NI, 0.5, 0.7, NI];
        assert_eq!(rank_of(&s, 1), Some(2));
        assert_eq!(rank_of(&s, 0), None);
        assert_eq!(rank_of(&s, 9), None);
    }

    #[test]
    fn hr_ndcg_mrr_by_hand() {
        assert_eq!(hit_at(Some(10), 10), 1.0);
        assert_eq!(hit_at(Some(11), 10), 0.0);
        assert_eq!(hit_at(None, 10), 0.0);
        assert_eq!(ndcg_at(Some(1), 10), 1.0);
        // 1 / log2(4) = 0.5
        assert!((ndcg_at(Some(3), 10) - 0.5).abs() < 1e-12);
        // 1 / log2(8) = 1/3
        assert!((ndcg_at(Some(7), 10) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(ndcg_at(Some(7), 5), 0.0);
        assert_eq!(ndcg_at(None, 5), 0.0);
        assert!((reciprocal_rank(Some(4)) - 0.25).abs() < 1e-12);
        assert_eq!(reciprocal_rank(None), 0.0);
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        let s = [0.2, 0.9, NI, 0.9, 0.5, 0.1];
        assert_eq!(top_k(&s, 3), vec![1, 3, 4]);
        assert_eq!(top_k(&s, 10), vec![1, 3, 4, 0, 5]);
        assert!(top_k(&s, 0).is_empty());
    }

    #[test]
    fn coverage_and_diversity_by_hand() {
        let a = [0u32, 1];
        let b = [1u32, 2];
        assert!((coverage([&a[..], &b[..]], 6) - 0.5).abs() < 1e-12);
        let v: [[f32; 2]; 3] = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]];
        // Pairs: (0,1) 1 − 0 = 1, (0,2) 1 − 1 = 0, (1,2) 1: mean 2/3.
        let d = intra_list_diversity(&[0, 1, 2], |i| &v[i as usize][..]);
        assert!((d - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(intra_list_diversity(&[0], |i| &v[i as usize][..]), 0.0);
    }
}
