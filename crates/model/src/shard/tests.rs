use super::*;

#[test]
fn subtrees_tile_the_range_and_are_whole_for_power_of_two_splits() {
    for n in 1..40 {
        for ranks in 1..=6 {
            let mut all = Vec::new();
            for r in 0..ranks {
                let s = Shard::split(n * CHUNK, ranks, r);
                let mut mine = Vec::new();
                subtrees(n, s.chunks(), &mut mine);
                let covered: Vec<usize> = mine.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(covered, s.chunks().collect::<Vec<_>>(), "n {n} rank {r}/{ranks}");
                if ranks.is_power_of_two() && n % ranks == 0 {
                    assert_eq!(mine.len(), 1, "n {n} rank {r}/{ranks}: {mine:?}");
                }
                all.extend(mine);
            }
            assert_eq!(all.first().map(|r| r.start), Some(0));
            assert!(all.windows(2).all(|w| w[0].end == w[1].start));
        }
    }
}

/// The plain pairwise tree over single values, for reference.
fn reference(v: &[f32], lo: usize, hi: usize) -> f32 {
    if hi - lo == 1 {
        return v[lo];
    }
    let m = lo + (hi - lo) / 2;
    reference(v, lo, m) + reference(v, m, hi)
}

#[test]
fn tree_sums_from_any_split_equal_the_whole_tree_bit_for_bit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for &(n, len) in &[
        (1usize, 5usize),
        (2, 1),
        (7, 1030),
        (8, 2048),
        (13, 3000),
        (32, 777),
    ] {
        // Values of many magnitudes, so that the order of additions shows in the bits.
        let data: Vec<f32> = (0..n * len)
            .map(|_| (rng.random::<f32>() - 0.5) * 10f32.powi(rng.random_range(-6..6)))
            .collect();
        let chunks = Leaves {
            data: &data,
            len,
            nodes: LeafNodes::Chunks { first: 0 },
        };
        let mut whole = vec![0.0; len];
        tree_sum(&chunks, 0..n, &mut whole);
        for (i, w) in whole.iter().enumerate() {
            let column: Vec<f32> = (0..n).map(|c| data[c * len + i]).collect();
            assert_eq!(w.to_bits(), reference(&column, 0, n).to_bits(), "n {n} value {i}");
        }
        for ranks in 1..=5 {
            let (mut nodes, mut sums) = (Vec::new(), Vec::new());
            for r in 0..ranks {
                let s = Shard::split(n * CHUNK, ranks, r);
                let local = Leaves {
                    data: &data[s.first * len..(s.first + s.count) * len],
                    len,
                    nodes: LeafNodes::Chunks { first: s.first },
                };
                let before = nodes.len();
                subtrees(n, s.chunks(), &mut nodes);
                for node in nodes[before..].iter().cloned() {
                    let mut out = vec![0.0; len];
                    tree_sum(&local, node, &mut out);
                    sums.extend(out);
                }
            }
            let gathered = Leaves {
                data: &sums,
                len,
                nodes: LeafNodes::Nodes(&nodes),
            };
            let mut total = vec![0.0; len];
            tree_sum(&gathered, 0..n, &mut total);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&total), bits(&whole), "n {n} over {ranks} ranks");
        }
    }
}

#[test]
fn shards_cover_the_batch_in_order() {
    for batch in 1..70 {
        for ranks in 1..=5 {
            let mut next = 0;
            for r in 0..ranks {
                let s = Shard::split(batch, ranks, r);
                assert_eq!(s.samples().start, next.min(batch));
                next = s.samples().end;
            }
            assert_eq!(next, batch);
        }
    }
    assert_eq!(Shard::whole(10), Shard::split(10, 1, 0));
}
