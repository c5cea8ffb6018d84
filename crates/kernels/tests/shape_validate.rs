//! `validate()` of every shape struct (conv2d, dense, max_pool2d): sizes whose products
//! would wrap a `usize` are refused before any kernel computes a length from them.

use petal_kernels::*;

/// Sizes whose products would wrap a `usize` are refused by `validate`, before any kernel
/// computes a length from them.
#[test]
fn conv2d_dense_max_pool2d_validate_refuse_shapes_too_large_for_memory() {
    let huge = Conv2dShape {
        batch: 8,
        in_c: 1 << 31,
        h: 1 << 31,
        w: 1 << 31,
        out_c: 8,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 0,
    };
    assert!(
        matches!(
            huge.validate(),
            Err(ShapeError::TooLarge {
                quantity: "the input",
                ..
            })
        ),
        "{:?}",
        huge.validate()
    );
    let pad = Conv2dShape {
        batch: 1,
        in_c: 1,
        h: 4,
        w: 4,
        out_c: 1,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: usize::MAX / 2,
    };
    assert!(
        matches!(pad.validate(), Err(ShapeError::TooLarge { .. })),
        "{:?}",
        pad.validate()
    );
    let d = DenseShape {
        batch: 8,
        inputs: (1 << 61) + 1,
        outputs: 8,
    };
    assert!(matches!(d.validate(), Err(ShapeError::TooLarge { .. })));
    let p = Pool2dShape {
        batch: 1,
        c: 1,
        h: 1 << 17,
        w: 1 << 17,
        k: 2,
        stride: 2,
    };
    assert!(matches!(
        p.validate(),
        Err(ShapeError::TooLarge {
            quantity: "one plane",
            ..
        })
    ));
}
