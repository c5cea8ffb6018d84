use super::*;
use crate::spec::parse_spec;

#[test]
fn flowernet_plan_fuses_relus_into_pools_and_keeps_only_the_dense_layers_values() {
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
            8 | 10 => Storage::Batch,
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
    let conv_params = [16 * 27 + 16, 32 * 144 + 32, 64 * 288 + 64];
    assert_eq!(p.layers[3].part_offset, conv_params[0]);
    assert_eq!(p.layers[6].part_offset, conv_params[0] + conv_params[1]);
    assert_eq!(p.part_len, conv_params.iter().sum::<usize>());
    assert_eq!(p.classes(), 5);
}
