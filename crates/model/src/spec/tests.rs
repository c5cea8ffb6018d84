use super::*;
use crate::layers::{ConvSpec, DenseSpec, MaxPoolSpec};

#[test]
fn presets_round_trip_through_format() {
    for p in [SEEDNET, FLOWERNET] {
        let layers = parse_spec(p).unwrap();
        assert_eq!(format_spec(&layers), p);
    }
    assert_eq!(parse_spec("seednet").unwrap(), parse_spec(SEEDNET).unwrap());
}

#[test]
fn preset_spec_sizes_the_classifier_to_the_class_count() {
    // Five classes give the constants (the seed's network, bit for bit).
    assert_eq!(preset_spec("seednet", 5).as_deref(), Some(SEEDNET));
    assert_eq!(preset_spec(" flowernet ", 5).as_deref(), Some(FLOWERNET));
    for classes in [2, 3, 10, 100] {
        for name in preset_names() {
            let spec = preset_spec(name, classes).unwrap();
            let layers = parse_spec(&spec).unwrap();
            assert_eq!(
                layers.last(),
                Some(&LayerSpec::Dense(DenseSpec {
                    out: classes,
                    bias: true
                })),
                "{name} for {classes}: {spec}"
            );
            // Everything before the classifier is the 5-class preset's.
            let five = parse_spec(name).unwrap();
            assert_eq!(layers[..layers.len() - 1], five[..five.len() - 1], "{name}");
        }
    }
    assert_eq!(preset_spec("resnet99", 5), None);
    assert_eq!(resolve_arch("conv3x3:4,dense:7", 3), "conv3x3:4,dense:7");
    assert_eq!(resolve_arch("seednet", 2), "conv3x3:8,maxpool2,dense:2");
}

#[test]
fn options_and_shorthands_parse() {
    let l = parse_spec(" conv5:4 / s2 / p2 / nobias , maxpool3/s2, relu, flatten, dense:7/nobias").unwrap();
    assert_eq!(
        l,
        vec![
            LayerSpec::Conv2d(ConvSpec {
                out_c: 4,
                kh: 5,
                kw: 5,
                stride: 2,
                pad: 2,
                bias: false
            }),
            LayerSpec::MaxPool2d(MaxPoolSpec { k: 3, stride: 2 }),
            LayerSpec::Relu,
            LayerSpec::Flatten,
            LayerSpec::Dense(DenseSpec { out: 7, bias: false }),
        ]
    );
    assert_eq!(
        parse_spec("conv1x3:2/p0").unwrap()[0],
        LayerSpec::Conv2d(ConvSpec {
            out_c: 2,
            kh: 1,
            kw: 3,
            stride: 1,
            pad: 0,
            bias: true
        })
    );
}

#[test]
fn errors_name_the_layer_and_position() {
    let cases = [
        ("conv3x3:8,maxpol2,dense:5", 2, "unknown layer `maxpol2`"),
        ("conv3x3:0,dense:5", 1, "output channels must be at least 1"),
        ("conv3x3,dense:5", 1, "needs its output channels"),
        ("conv3x3:8,,dense:5", 2, "empty layer"),
        ("conv3x3:8,dense:five", 2, "outputs `five` is not a whole number"),
        ("conv3x3:8/q1,dense:5", 1, "unknown conv option `/q1`"),
        ("relu/s2", 1, "takes no options"),
        ("dense", 1, "needs its outputs"),
        ("maxpool", 1, "needs its window size"),
        ("conv3x3:99999999,dense:5", 1, "larger than the limit"),
        ("", 1, "empty"),
    ];
    for (spec, pos, msg) in cases {
        let e = parse_spec(spec).unwrap_err();
        assert_eq!(e.position, pos, "{spec}: {e}");
        assert!(e.to_string().contains(msg), "{spec}: `{e}` lacks `{msg}`");
    }
}
