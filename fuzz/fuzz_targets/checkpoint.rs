//! The checkpoint loader on arbitrary bytes: a typed error or a network, never a panic, a
//! hang or an allocation the file does not justify. A network that loads runs one
//! prediction (when small) so a checkpoint cannot describe a network that breaks later.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petal_model::checkpoint::load_checkpoint_bytes;

fuzz_target!(|data: &[u8]| {
    if let Ok((mut net, meta)) = load_checkpoint_bytes(data) {
        assert_eq!(meta.classes.len(), net.classes());
        let per = net.input_shape().len();
        if per <= 1 << 16 && net.param_count() <= 1 << 20 {
            let x = vec![0.5f32; per];
            let p = net.predict(&x).expect("a loaded network predicts");
            assert_eq!(p.len(), net.classes());
        }
    }
});
