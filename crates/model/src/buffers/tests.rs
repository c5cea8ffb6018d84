use super::*;
use crate::plan::build;
use crate::shape::InputShape;
use crate::spec::parse_spec;

#[test]
fn for_each_chunk_gives_every_chunk_exactly_its_own_rows_of_a_larger_buffer() {
    // flatten (a view of the input), then a dense layer whose output is kept in a
    // batch buffer; sized for 16 samples, then a batch of 10 (chunks of 4, 4, 2).
    let b = build(&parse_spec("dense:3").unwrap(), InputShape { c: 1, h: 2, w: 2 }).unwrap();
    let (plan, slot) = (&b.plan, 1);
    assert_eq!(plan.layers[slot].storage, Storage::Batch);
    let mut bufs = Buffers::default();
    bufs.ensure(plan, 16, true);
    let x: Vec<f32> = (0..10 * 4).map(|i| (i / 4) as f32).collect();
    let labels = [0; 10];
    for labels in [None, Some(&labels[..])] {
        bufs.layers.outs[slot].fill(-1.0);
        bufs.for_each_chunk(plan, &x, labels, |mut c| {
            let n = c.bufs.images();
            assert!(n == 4 || n == 2, "{n} images");
            assert_eq!(c.labels.len(), if labels.is_some() { n } else { 0 });
            let (input, out, argmax) = c.bufs.forward_io(None, 4, slot, 3);
            assert_eq!((input.len(), out.len(), argmax.len()), (n * 4, n * 3, 0));
            for (o, row) in out.chunks_exact_mut(3).zip(input.chunks_exact(4)) {
                o.fill(row[0]);
            }
            let g = c.bufs.backward_io(None, 4, slot, 3, Dx::Write);
            assert_eq!((g.y.len(), g.dy.len()), (n * 3, n * 3));
            g.dx.expect("input gradient on").fill(g.y[0]);
        });
        let want: Vec<f32> = (0..16 * 3)
            .map(|i| if i < 30 { (i / 3) as f32 } else { -1.0 })
            .collect();
        assert_eq!(bufs.layers.outs[slot], want);
        // Each chunk's input gradient rows hold its first sample's index.
        let dx: Vec<f32> = (0..10 * 4).map(|i| (i / 16 * 4) as f32).collect();
        assert_eq!(bufs.input_grad[..40], dx);
    }
}
