use super::*;
use crate::spec::parse_spec;

#[test]
fn flowernet_plan_fuses_relus_into_pools_and_keeps_only_the_logits() {
    let b = build(
        &parse_spec("flowernet").unwrap(),
        InputShape { c: 3, h: 64, w: 64 },
    )
    .unwrap();
    let p = &b.plan;
    assert_eq!(p.layers.len(), 11);
    for (i, l) in p.layers.iter().enumerate() {
        let relu_before_pool = matches!(i, 1 | 4 | 7);
        assert_eq!(l.runs, !relu_before_pool && i != 9, "layer {i}");
        assert_eq!(l.fused_relu, matches!(i, 2 | 5 | 8), "layer {i}");
        assert_eq!(l.argmax, matches!(i, 2 | 5 | 8), "layer {i}");
        assert_eq!(l.slot, Some(if l.runs { i } else { i - 1 }), "layer {i}");
        assert_eq!(
            l.input,
            i.checked_sub(1).and_then(|j| p.layers[j].slot),
            "layer {i}"
        );
        assert_eq!(l.needs_dx, i > 0, "layer {i}");
        let storage = match i {
            10 => Storage::Batch,
            _ if l.runs => Storage::Arena,
            _ => Storage::None,
        };
        assert_eq!(l.storage, storage, "layer {i}");
        assert_eq!(l.out_len, b.shapes[i].len(), "layer {i}");
    }
    assert_eq!(
        p.layers[9].slot,
        Some(8),
        "the flatten is a view of the last pool"
    );
    // Every convolution's and the dense layer's weights then bias, in layer order.
    let params = [16 * 27 + 16, 32 * 144 + 32, 64 * 288 + 64, 5 * 4096 + 5];
    assert_eq!(p.layers[3].part_offset, params[0]);
    assert_eq!(p.layers[6].part_offset, params[0] + params[1]);
    assert_eq!(p.layers[10].part_offset, params[..3].iter().sum::<usize>());
    assert_eq!(p.part_len, params.iter().sum::<usize>());
    assert_eq!(p.classes(), 5);
}

#[test]
fn gradients_share_buffers_only_when_never_live_at_once() {
    for (spec, input) in [
        (
            crate::spec::preset_spec("resnet20", 10).unwrap(),
            InputShape { c: 3, h: 32, w: 32 },
        ),
        (
            "bn,res(conv3x3:4/p1,bn,relu|conv1x1:4),relu,dense:8,relu,dense:3".to_string(),
            InputShape { c: 2, h: 5, w: 5 },
        ),
    ] {
        let b = build(&parse_spec(&spec).unwrap(), input).unwrap();
        let p = &b.plan;
        let n = p.layers.len();
        // Each layer's gradient interval: from itself to its last reader.
        let mut last: Vec<usize> = (0..n).collect();
        for (j, l) in p.layers.iter().enumerate().filter(|(_, l)| l.runs) {
            for s in std::iter::once(l.input).chain(l.input2).flatten() {
                last[s] = last[s].max(j);
            }
        }
        let users: Vec<usize> = (0..n).filter(|&i| p.layers[i].grad_buf.is_some()).collect();
        assert!(users.iter().all(|&i| p.layers[i].storage == Storage::Batch));
        for &i in &users {
            let g = p.layers[i].grad_buf.unwrap();
            assert!(p.grad_bufs[g] >= p.layers[i].out_len, "{spec}: layer {i}");
            for &j in users.iter().filter(|&&j| j > i) {
                if p.layers[j].grad_buf == Some(g) {
                    assert!(
                        last[i] < j,
                        "{spec}: layers {i} and {j} share buffer {g} while both live"
                    );
                }
            }
        }
        // The point: in a deep network, far fewer gradient values than layers' outputs.
        let outs: usize = users.iter().map(|&i| p.layers[i].out_len).sum();
        let grads: usize = p.grad_bufs.iter().sum();
        assert!(
            grads < outs,
            "{spec}: {grads} gradient values per sample for {outs} outputs"
        );
        if n > 50 {
            assert!(
                grads * 4 < outs,
                "{spec}: {grads} gradient values per sample for {outs} outputs"
            );
        }
    }
}

#[test]
fn dense_layers_past_the_part_limit_are_deferred_with_their_values_kept() {
    // 4x9x7 = 252 inputs x 300 outputs = 75,900 values with the bias: deferred; 300 -> 3
    // (903) kept per chunk.
    let b = build(
        &parse_spec("conv3x3:4/p1,relu,dense:300,relu,dense:3").unwrap(),
        InputShape { c: 3, h: 9, w: 7 },
    )
    .unwrap();
    let p = &b.plan;
    let (conv, big, small) = (4 * 27 + 4, 252 * 300 + 300, 300 * 3 + 3);
    let dense: Vec<usize> = (0..p.layers.len())
        .filter(|&i| matches!(b.layers[i], Layer::Dense(_)))
        .collect();
    assert_eq!(dense.len(), 2);
    let (d1, d2) = (&p.layers[dense[0]], &p.layers[dense[1]]);
    assert!(d1.deferred && !d2.deferred);
    assert!(big > DENSE_PART_MAX && small < DENSE_PART_MAX);
    assert_eq!(p.part_len, conv + small);
    assert_eq!(d2.part_offset, conv);
    assert_eq!(d1.part_offset, p.part_len);
    assert_eq!(p.grad_len, conv + small + big);
    // Its input, output and output gradient outlive the chunk tasks.
    assert_eq!(d1.storage, Storage::Batch);
    assert_eq!(p.layers[d1.input.unwrap()].storage, Storage::Batch);
    let g = d1.grad_buf.expect("a gradient buffer of its own");
    assert!(p.layers.iter().filter(|l| l.grad_buf == Some(g)).count() == 1);
}
